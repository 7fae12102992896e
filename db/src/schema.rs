//! What a database's schema means, read back from the database itself and
//! normalized across backends, so a test can check that the SQLite and
//! PostgreSQL migration sets make the same tables: the same columns with the
//! same type class and nullability, the same primary keys, unique
//! constraints and indexes, and the same triggers.
//!
//! SQLite is read with `sqlite_master` and the `pragma_*` table functions,
//! PostgreSQL with `information_schema` and `pg_index` (the tables of the
//! connection's `current_schema()`). sqlx's own `_sqlx_migrations` table is
//! left out.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyPool, Row};

use crate::Backend;

/// A column's meaning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    /// `int64`, `int32`, `int16`, `text`, `bytes`, `real`, `bool`, or the
    /// declared type when it is none of them.
    pub class: String,
    /// Whether NULL is refused (primary key columns count as NOT NULL on
    /// both: SQLite's permissive NULL in a non-integer primary key is a
    /// legacy quirk no query here relies on).
    pub not_null: bool,
    /// Whether the column has a default value.
    pub has_default: bool,
    /// Whether the database numbers new rows itself (SQLite `AUTOINCREMENT`,
    /// PostgreSQL identity or serial).
    pub auto: bool,
}

/// A table's meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Columns by name.
    pub columns: BTreeMap<String, Column>,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// Column lists of unique constraints and unique indexes (besides the
    /// primary key).
    pub unique: BTreeSet<Vec<String>>,
    /// Non-unique indexes: name and column list.
    pub indexes: BTreeSet<(String, Vec<String>)>,
    /// Trigger names.
    pub triggers: BTreeSet<String>,
}

/// Every table of the schema by name.
pub type Schema = BTreeMap<String, Table>;

/// The type class of a declared SQLite type (its affinity, with integers
/// being 64-bit) or a PostgreSQL `data_type`.
fn class(backend: Backend, declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    let c = match backend {
        Backend::Sqlite if t.contains("int") => "int64",
        Backend::Sqlite if t.contains("char") || t.contains("text") || t.contains("clob") => "text",
        Backend::Sqlite if t.contains("blob") => "bytes",
        Backend::Sqlite if t.contains("real") || t.contains("floa") || t.contains("doub") => "real",
        Backend::Postgres => match t.as_str() {
            "bigint" => "int64",
            "integer" => "int32",
            "smallint" => "int16",
            "text" | "character varying" | "character" => "text",
            "bytea" => "bytes",
            "double precision" | "real" => "real",
            "boolean" => "bool",
            _ => return t,
        },
        _ => return t,
    };
    c.to_owned()
}

fn cols(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads the schema of the database behind `pool`.
pub async fn read_schema(pool: &AnyPool, backend: Backend) -> Result<Schema, sqlx::Error> {
    match backend {
        Backend::Sqlite => read_sqlite(pool).await,
        Backend::Postgres => read_postgres(pool).await,
    }
}

async fn read_sqlite(pool: &AnyPool) -> Result<Schema, sqlx::Error> {
    let mut schema = Schema::new();
    let tables = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for t in tables {
        let name: String = t.try_get(0)?;
        let sql: String = t.try_get(1)?;
        let mut table = Table::default();
        let rows = sqlx::query(
            "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk FROM pragma_table_info($1)",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in &rows {
            let col: String = r.try_get(0)?;
            let declared: String = r.try_get(1)?;
            let key: i64 = r.try_get(4)?;
            if key > 0 {
                pk.push((key, col.clone()));
            }
            table.columns.insert(
                col,
                Column {
                    class: class(Backend::Sqlite, &declared),
                    not_null: r.try_get::<i64, _>(2)? != 0 || key > 0,
                    has_default: r.try_get::<i64, _>(3)? != 0,
                    auto: false,
                },
            );
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        // AUTOINCREMENT (allowed only on the one INTEGER PRIMARY KEY) is the
        // twin of a PostgreSQL identity column. A plain INTEGER PRIMARY KEY
        // is SQLite's way to write a 64-bit key and counts as a plain key.
        if let [only] = table.primary_key.as_slice() {
            if let Some(c) = table.columns.get_mut(only) {
                if sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
                    c.auto = true;
                }
            }
        }
        let indexes = sqlx::query("SELECT name, \"unique\", origin FROM pragma_index_list($1)")
            .bind(&name)
            .fetch_all(pool)
            .await?;
        for i in indexes {
            let index: String = i.try_get(0)?;
            let unique = i.try_get::<i64, _>(1)? != 0;
            let origin: String = i.try_get(2)?;
            if origin == "pk" {
                continue;
            }
            let columns: Vec<String> =
                sqlx::query("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<_, _>>()?;
            if unique {
                table.unique.insert(columns);
            } else {
                table.indexes.insert((index, columns));
            }
        }
        let triggers =
            sqlx::query("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1")
                .bind(&name)
                .fetch_all(pool)
                .await?;
        for r in triggers {
            table.triggers.insert(r.try_get(0)?);
        }
        schema.insert(name, table);
    }
    Ok(schema)
}

async fn read_postgres(pool: &AnyPool) -> Result<Schema, sqlx::Error> {
    let mut schema = Schema::new();
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text,
                CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END,
                CASE WHEN column_default IS NOT NULL THEN 1 ELSE 0 END,
                CASE WHEN is_identity = 'YES' OR column_default LIKE 'nextval(%' THEN 1 ELSE 0 END
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for r in columns {
        let table: String = r.try_get(0)?;
        let auto = r.try_get::<i32, _>(5)? != 0;
        schema.entry(table).or_default().columns.insert(
            r.try_get(1)?,
            Column {
                class: class(Backend::Postgres, &r.try_get::<String, _>(2)?),
                not_null: r.try_get::<i32, _>(3)? != 0,
                // An identity column's numbering is `auto`, not a default.
                has_default: r.try_get::<i32, _>(4)? != 0 && !auto,
                auto,
            },
        );
    }
    let indexes = sqlx::query(
        "SELECT t.relname::text, i.relname::text,
                CASE WHEN ix.indisunique THEN 1 ELSE 0 END,
                CASE WHEN ix.indisprimary THEN 1 ELSE 0 END,
                (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord)
                   FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum)
         FROM pg_index ix
         JOIN pg_class i ON i.oid = ix.indexrelid
         JOIN pg_class t ON t.oid = ix.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await?;
    for r in indexes {
        let table: String = r.try_get(0)?;
        let index: String = r.try_get(1)?;
        let unique = r.try_get::<i32, _>(2)? != 0;
        let primary = r.try_get::<i32, _>(3)? != 0;
        let columns = cols(&r.try_get::<Option<String>, _>(4)?.unwrap_or_default());
        let t = schema.entry(table).or_default();
        if primary {
            t.primary_key = columns;
        } else if unique {
            t.unique.insert(columns);
        } else {
            t.indexes.insert((index, columns));
        }
    }
    let triggers = sqlx::query(
        "SELECT DISTINCT event_object_table::text, trigger_name::text
         FROM information_schema.triggers WHERE trigger_schema = current_schema()",
    )
    .fetch_all(pool)
    .await?;
    for r in triggers {
        let table: String = r.try_get(0)?;
        schema
            .entry(table)
            .or_default()
            .triggers
            .insert(r.try_get(1)?);
    }
    Ok(schema)
}

/// Every difference between two schemas, one line each (empty: they mean
/// the same).
pub fn differences(a: &Schema, b: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let (Some(x), Some(y)) = (a.get(name), b.get(name)) else {
            out.push(format!("table {name}: only in one schema"));
            continue;
        };
        let columns: BTreeSet<&String> = x.columns.keys().chain(y.columns.keys()).collect();
        for c in columns {
            let (l, r) = (x.columns.get(c), y.columns.get(c));
            if l != r {
                out.push(format!("{name}.{c}: {l:?} vs {r:?}"));
            }
        }
        if x.primary_key != y.primary_key {
            out.push(format!(
                "{name}: primary key {:?} vs {:?}",
                x.primary_key, y.primary_key
            ));
        }
        if x.unique != y.unique {
            out.push(format!("{name}: unique {:?} vs {:?}", x.unique, y.unique));
        }
        if x.indexes != y.indexes {
            out.push(format!(
                "{name}: indexes {:?} vs {:?}",
                x.indexes, y.indexes
            ));
        }
        if x.triggers != y.triggers {
            out.push(format!(
                "{name}: triggers {:?} vs {:?}",
                x.triggers, y.triggers
            ));
        }
    }
    out
}
