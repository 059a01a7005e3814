-- Typed columns as the API sends them (`hiscaler/temu-go` entity/order.go, the partner docs):
-- a child's `fulfillmentType` is a string (`fulfillBySeller` / `fulfillByCooperativeWarehouse`),
-- not a number, so the INTEGER column was NULL on every row from the real API. Adds the fields
-- sellers filter by: the child's warehouse, payment type, labels and shipping time; the parent's
-- shipping time, latest delivery time, labels and shipping fee flag. Existing rows are re-derived
-- from the raw JSON kept with each parent order; a value of another JSON type stays NULL here
-- (the raw keeps it; the daemon counts such values as they arrive).

ALTER TABLE order_items ALTER COLUMN fulfillment_type TYPE TEXT USING NULL;
ALTER TABLE order_items
    ADD COLUMN inventory_deduction_warehouse_id    TEXT,
    ADD COLUMN inventory_deduction_warehouse_name  TEXT,
    ADD COLUMN order_payment_type                  TEXT,
    ADD COLUMN labels                              JSONB,
    ADD COLUMN shipping_time                       TIMESTAMPTZ;

ALTER TABLE orders
    ADD COLUMN parent_shipping_time  TIMESTAMPTZ,
    ADD COLUMN latest_delivery_time  TIMESTAMPTZ,
    ADD COLUMN labels                JSONB,
    ADD COLUMN has_shipping_fee      BOOLEAN;

CREATE INDEX order_items_shop_fulfillment ON order_items (shop_id, fulfillment_type);
CREATE INDEX order_items_shop_warehouse ON order_items (shop_id, inventory_deduction_warehouse_id);

-- A Temu time (seconds; above 10^11 milliseconds; 0 or less is "not set") from a JSON value of
-- the documented type, else NULL. Used by this migration only.
CREATE FUNCTION pg_temp.temu_time(v JSONB) RETURNS TIMESTAMPTZ LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric <= 0 THEN NULL
        WHEN (v #>> '{}')::numeric > 100000000000 THEN to_timestamp((v #>> '{}')::numeric / 1000)
        ELSE to_timestamp((v #>> '{}')::numeric)
    END
$$;

CREATE FUNCTION pg_temp.temu_text(v JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
$$;

CREATE FUNCTION pg_temp.temu_id(v JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number') THEN v #>> '{}' END
$$;

UPDATE order_items i
   SET fulfillment_type = pg_temp.temu_text(c -> 'fulfillmentType'),
       inventory_deduction_warehouse_id = pg_temp.temu_id(c -> 'inventoryDeductionWarehouseId'),
       inventory_deduction_warehouse_name = pg_temp.temu_text(c -> 'inventoryDeductionWarehouseName'),
       order_payment_type = pg_temp.temu_text(c -> 'orderPaymentType'),
       labels = CASE WHEN jsonb_typeof(c -> 'orderLabel') = 'array' THEN c -> 'orderLabel' END,
       shipping_time = pg_temp.temu_time(c -> 'orderShippingTime')
  FROM orders o, jsonb_array_elements(
           CASE WHEN jsonb_typeof(o.raw -> 'orderList') = 'array' THEN o.raw -> 'orderList'
                ELSE '[]'::jsonb END) AS c
 WHERE i.order_id = o.id AND c ->> 'orderSn' = i.order_sn;

UPDATE orders o
   SET parent_shipping_time = pg_temp.temu_time(o.raw #> '{parentOrderMap,parentShippingTime}'),
       latest_delivery_time = pg_temp.temu_time(o.raw #> '{parentOrderMap,latestDeliveryTime}'),
       labels = CASE WHEN jsonb_typeof(o.raw #> '{parentOrderMap,parentOrderLabel}') = 'array'
                     THEN o.raw #> '{parentOrderMap,parentOrderLabel}' END,
       has_shipping_fee = CASE WHEN jsonb_typeof(o.raw #> '{parentOrderMap,hasShippingFee}') = 'boolean'
                               THEN (o.raw #>> '{parentOrderMap,hasShippingFee}')::boolean END;
