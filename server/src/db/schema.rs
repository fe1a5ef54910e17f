// The same tables on both backends (see migrations/sqlite and migrations/postgres).

diesel::table! {
    doc_changes (id) {
        id -> BigInt,
        doc_id -> Text,
        hash -> Binary,
        bytes -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    doc_snapshots (id) {
        id -> BigInt,
        doc_id -> Text,
        heads -> Binary,
        bytes -> Binary,
        change_count -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    server_meta (key) {
        key -> Text,
        value -> Text,
    }
}
