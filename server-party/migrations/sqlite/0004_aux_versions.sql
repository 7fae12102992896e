-- Aux info made by aux-info sessions (issue #15, the repair of a group whose
-- parties hold aux info of different runs, or a rotation): kept beside the
-- group's first aux info (aux_infos), one row per (group, fingerprint),
-- never replaced. A keygen uses one only when its descriptor names the
-- fingerprint, which the coordinator does once every party of the group
-- reported the same one. The row's fingerprint is recomputed from the
-- opened record and must match (a row moved to another fingerprint is
-- refused); the record's context binds the group and the fingerprint.
CREATE TABLE aux_info_versions (
    group_id    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (group_id, fingerprint)
);
