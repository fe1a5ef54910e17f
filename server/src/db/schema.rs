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

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        disabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        family_id -> Text,
        user_id -> Text,
        token_hash -> Binary,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor_user_id -> Nullable<Text>,
        action -> Text,
        subject -> Nullable<Text>,
        detail -> Text,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        platform -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(devices -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(devices, users);

diesel::table! {
    ticket_assignments (id) {
        id -> Text,
        doc_id -> Text,
        technician_id -> Text,
        assigned_by -> Text,
        assigned_at -> BigInt,
        unassigned_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    quarantined_edits (id) {
        id -> Text,
        doc_id -> Text,
        user_id -> Text,
        device_id -> Text,
        at -> BigInt,
        path -> Text,
        attempted -> Text,
        restored -> Text,
        compensation_hash -> Binary,
    }
}
