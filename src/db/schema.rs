// @generated automatically by Diesel CLI.

diesel::table! {
    aftersales (id) {
        id -> Int8,
        shop_id -> Int8,
        parent_after_sales_sn -> Text,
        parent_order_sn -> Nullable<Text>,
        status_group -> Nullable<Int4>,
        #[sql_name = "type"]
        type_ -> Nullable<Int4>,
        created_at_temu -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        raw -> Jsonb,
        first_seen_at -> Timestamptz,
        last_synced_at -> Timestamptz,
    }
}

diesel::table! {
    app_budget_members (app_key, instance_id) {
        app_key -> Text,
        instance_id -> Text,
        joined_at -> Timestamptz,
        last_seen -> Timestamptz,
    }
}

diesel::table! {
    daemon_instances (instance_id) {
        instance_id -> Text,
        hostname -> Text,
        pid -> Int4,
        version -> Text,
        started_at -> Timestamptz,
        last_seen -> Timestamptz,
    }
}

diesel::table! {
    order_items (id) {
        id -> Int8,
        order_id -> Int8,
        shop_id -> Int8,
        order_sn -> Text,
        goods_id -> Nullable<Text>,
        sku_id -> Nullable<Text>,
        status -> Nullable<Int4>,
        quantity -> Nullable<Int8>,
        original_quantity -> Nullable<Int8>,
        canceled_quantity_before_shipment -> Nullable<Int8>,
        fulfillment_type -> Nullable<Text>,
        product_sku_id -> Nullable<Text>,
        product_id -> Nullable<Text>,
        ext_code -> Nullable<Text>,
        inventory_deduction_warehouse_id -> Nullable<Text>,
        inventory_deduction_warehouse_name -> Nullable<Text>,
        order_payment_type -> Nullable<Text>,
        labels -> Nullable<Jsonb>,
        shipping_time -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        shop_id -> Int8,
        parent_order_sn -> Text,
        status -> Nullable<Int4>,
        order_time -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        expect_ship_latest_time -> Nullable<Timestamptz>,
        region_id -> Nullable<Int8>,
        site_id -> Nullable<Int8>,
        raw -> Jsonb,
        first_seen_at -> Timestamptz,
        last_synced_at -> Timestamptz,
        parent_shipping_time -> Nullable<Timestamptz>,
        latest_delivery_time -> Nullable<Timestamptz>,
        labels -> Nullable<Jsonb>,
        has_shipping_fee -> Nullable<Bool>,
    }
}

diesel::table! {
    product_skus (id) {
        id -> Int8,
        product_id -> Int8,
        shop_id -> Int8,
        sku_id -> Text,
        sku_sn -> Nullable<Text>,
        stock -> Nullable<Int8>,
        spec -> Nullable<Jsonb>,
    }
}

diesel::table! {
    products (id) {
        id -> Int8,
        shop_id -> Int8,
        goods_id -> Text,
        name -> Nullable<Text>,
        out_goods_sn -> Nullable<Text>,
        quantity -> Nullable<Int8>,
        price -> Nullable<Numeric>,
        currency -> Nullable<Text>,
        raw -> Jsonb,
        removed_at -> Nullable<Timestamptz>,
        last_seen_run_id -> Nullable<Int8>,
        first_seen_at -> Timestamptz,
        last_synced_at -> Timestamptz,
    }
}

diesel::table! {
    shops (id) {
        id -> Int8,
        name -> Text,
        region -> Text,
        mall_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Int8,
        shop_id -> Int8,
        stream -> Text,
        instance_id -> Text,
        status -> Text,
        window_start -> Nullable<Timestamptz>,
        window_end -> Nullable<Timestamptz>,
        pages -> Int4,
        records_seen -> Int4,
        inserted -> Int4,
        updated -> Int4,
        error_class -> Nullable<Text>,
        error_message -> Nullable<Text>,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        heartbeat_at -> Timestamptz,
    }
}

diesel::table! {
    sync_state (shop_id, stream) {
        shop_id -> Int8,
        stream -> Text,
        cursor -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        last_success_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        last_error_class -> Nullable<Text>,
        parked_reason -> Nullable<Text>,
        updated_at -> Timestamptz,
        backfill_reason -> Nullable<Text>,
    }
}

diesel::joinable!(aftersales -> shops (shop_id));
diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_items -> shops (shop_id));
diesel::joinable!(orders -> shops (shop_id));
diesel::joinable!(product_skus -> products (product_id));
diesel::joinable!(product_skus -> shops (shop_id));
diesel::joinable!(products -> shops (shop_id));
diesel::joinable!(sync_runs -> shops (shop_id));
diesel::joinable!(sync_state -> shops (shop_id));

diesel::allow_tables_to_appear_in_same_query!(
    aftersales,
    app_budget_members,
    daemon_instances,
    order_items,
    orders,
    product_skus,
    products,
    shops,
    sync_runs,
    sync_state,
);
