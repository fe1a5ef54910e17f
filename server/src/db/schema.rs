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
        token_generation -> BigInt,
        tokens_revoked_at -> Nullable<BigInt>,
        version -> BigInt,
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
        client_id -> Text,
    }
}

diesel::table! {
    login_throttle (username, client) {
        username -> Text,
        client -> Text,
        failures -> BigInt,
        lockouts -> BigInt,
        locked_until -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    ticket_numbers (ticket_no) {
        ticket_no -> Text,
        doc_id -> Text,
        created_at -> BigInt,
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

diesel::table! {
    customers (id) {
        id -> Text,
        name -> Text,
        phone -> Text,
        email -> Text,
        address -> Text,
        notes -> Text,
        archived -> Bool,
        created_at -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    sites (id) {
        id -> Text,
        customer_id -> Text,
        name -> Text,
        address -> Text,
        created_at -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    assets (id) {
        id -> Text,
        customer_id -> Text,
        site_id -> Nullable<Text>,
        product -> Text,
        model -> Text,
        serial -> Text,
        purchased_at -> Text,
        warranty_until -> Text,
        created_at -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    parts (part_no) {
        part_no -> Text,
        name -> Text,
        unit_cost_cents -> BigInt,
        active -> Bool,
        created_at -> BigInt,
        serial_required -> Bool,
        version -> BigInt,
    }
}

diesel::table! {
    tickets (doc_id) {
        doc_id -> Text,
        ticket_no -> Text,
        status -> Text,
        priority -> Text,
        customer_id -> Text,
        customer_name -> Text,
        customer_phone -> Text,
        customer_address -> Text,
        site -> Text,
        asset_id -> Text,
        product -> Text,
        model -> Text,
        serial -> Text,
        fault_description -> Text,
        occurred_at -> Text,
        reported_via -> Text,
        technician_id -> Text,
        appointment_start -> Text,
        appointment_end -> Text,
        created_at -> Text,
        completed_at -> Text,
        result -> Text,
        visit_count -> BigInt,
        survey_scale -> Nullable<BigInt>,
        survey_efficiency -> Nullable<BigInt>,
        survey_attitude -> Nullable<BigInt>,
        survey_reasonableness -> Nullable<BigInt>,
        feedback_comment -> Text,
    }
}

diesel::table! {
    visits (doc_id, position) {
        doc_id -> Text,
        position -> BigInt,
        visit_id -> Text,
        technician_id -> Text,
        arrived_at -> Text,
        departed_at -> Text,
        work_done -> Text,
        result -> Text,
        fixed -> Nullable<Bool>,
    }
}

diesel::table! {
    parts_used (doc_id, position) {
        doc_id -> Text,
        position -> BigInt,
        part_entry_id -> Text,
        part_no -> Text,
        qty -> BigInt,
        serial -> Text,
        source -> Text,
        visit_id -> Text,
        technician_id -> Text,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Text,
        technician_id -> Text,
        part_no -> Text,
        qty_delta -> BigInt,
        reason -> Text,
        doc_id -> Nullable<Text>,
        at -> Text,
    }
}

diesel::table! {
    signoffs (doc_id) {
        doc_id -> Text,
        signer_name -> Text,
        signed_at -> Text,
        signature_sha256 -> Text,
        doc_heads -> Text,
        heads_valid -> Bool,
        signed_content_sha256 -> Text,
        current_content_sha256 -> Text,
        modified_after_signoff -> Bool,
    }
}

diesel::table! {
    status_events (doc_id, seq) {
        doc_id -> Text,
        seq -> BigInt,
        from_status -> Text,
        to_status -> Text,
        by_user -> Text,
        by_role -> Text,
        at -> Text,
        device_at -> Text,
    }
}

diesel::table! {
    write_only_closed (doc_id, device_id) {
        doc_id -> Text,
        device_id -> Text,
        closed_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(parts_used, parts);
diesel::allow_tables_to_appear_in_same_query!(tickets, visits);

diesel::table! {
    blob_uploads (sha256, user_id) {
        sha256 -> Text,
        user_id -> Text,
        bytes -> BigInt,
        uploaded_at -> BigInt,
    }
}

diesel::table! {
    blob_links (doc_id, sha256, linked_by) {
        doc_id -> Text,
        sha256 -> Text,
        linked_by -> Text,
        linked_at -> BigInt,
        confirmed -> Bool,
    }
}

diesel::table! {
    service_policy (id) {
        id -> BigInt,
        policy -> Text,
        updated_at -> Text,
        updated_by -> Text,
    }
}

diesel::table! {
    ticket_sla (doc_id) {
        doc_id -> Text,
        priority -> Text,
        worst -> Text,
        respond_state -> Text,
        respond_due_at -> Text,
        respond_met_at -> Text,
        resolve_state -> Text,
        resolve_due_at -> Text,
        resolve_met_at -> Text,
        evaluated_at -> Text,
    }
}

diesel::table! {
    escalations (id) {
        id -> Text,
        doc_id -> Text,
        ticket_no -> Text,
        milestone -> Text,
        tier -> Text,
        sla_state -> Text,
        notified -> Text,
        created_at -> Text,
        acknowledged_by -> Nullable<Text>,
        acknowledged_at -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(tickets, ticket_sla);

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        event -> Text,
        subject -> Text,
        payload -> Text,
        created_at -> Text,
        attempts -> BigInt,
        next_attempt_at -> Text,
        last_status -> Nullable<BigInt>,
        last_error -> Text,
        delivered_at -> Nullable<Text>,
    }
}

diesel::table! {
    callbacks (id) {
        id -> Text,
        doc_id -> Text,
        ticket_no -> Text,
        customer_id -> Text,
        reason -> Text,
        due_at -> Text,
        created_at -> Text,
        reached -> Nullable<Bool>,
        solved -> Nullable<Bool>,
        note -> Text,
        done_by -> Nullable<Text>,
        done_at -> Nullable<Text>,
    }
}

diesel::table! {
    customer_flags (id) {
        id -> Text,
        customer_id -> Text,
        trigger_doc_id -> Text,
        streak -> BigInt,
        flagged_at -> Text,
        cleared_by -> Nullable<Text>,
        cleared_at -> Nullable<Text>,
        cleared_note -> Text,
    }
}

diesel::table! {
    reconciliation_decisions (id) {
        id -> Text,
        doc_id -> Text,
        ticket_no -> Text,
        decision -> Text,
        reason -> Text,
        override_problems -> Bool,
        checks -> Text,
        by_user -> Text,
        at -> Text,
    }
}

diesel::table! {
    reconciliation_exports (id) {
        id -> Text,
        period_from -> Text,
        period_to -> Text,
        format -> Text,
        created_by -> Text,
        created_at -> Text,
        job_count -> BigInt,
        line_count -> BigInt,
        jobs -> Text,
        content_sha256 -> Text,
        content -> Text,
    }
}

diesel::table! {
    complaints (id) {
        id -> Text,
        customer_id -> Text,
        doc_id -> Text,
        ticket_no -> Text,
        category -> Text,
        description -> Text,
        received_at -> Text,
        created_by -> Text,
        created_at -> Text,
        responded_at -> Nullable<Text>,
        responded_by -> Nullable<Text>,
        response_note -> Text,
        started_at -> Nullable<Text>,
        started_by -> Nullable<Text>,
        resolved_at -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        resolution -> Text,
        customer_satisfied -> Nullable<Bool>,
        respond_state -> Text,
        respond_due_at -> Text,
        resolve_state -> Text,
        resolve_due_at -> Text,
        start_state -> Text,
        start_due_at -> Text,
        repair_doc_id -> Text,
    }
}

diesel::table! {
    survey_links (id) {
        id -> Text,
        doc_id -> Text,
        ticket_no -> Text,
        created_by -> Text,
        created_at -> Text,
        expires_at -> Text,
        used_at -> Nullable<Text>,
        answer -> Nullable<Text>,
        applied_at -> Nullable<Text>,
    }
}

diesel::table! {
    ticket_contacts (id) {
        id -> Text,
        doc_id -> Text,
        at -> Text,
        by_user -> Text,
        channel -> Text,
        note -> Text,
    }
}
