//! (filled in by the redesign)
