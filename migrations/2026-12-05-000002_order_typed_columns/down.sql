DROP INDEX order_items_shop_warehouse;
DROP INDEX order_items_shop_fulfillment;
ALTER TABLE orders
    DROP COLUMN has_shipping_fee,
    DROP COLUMN labels,
    DROP COLUMN latest_delivery_time,
    DROP COLUMN parent_shipping_time;
ALTER TABLE order_items
    DROP COLUMN shipping_time,
    DROP COLUMN labels,
    DROP COLUMN order_payment_type,
    DROP COLUMN inventory_deduction_warehouse_name,
    DROP COLUMN inventory_deduction_warehouse_id;
ALTER TABLE order_items ALTER COLUMN fulfillment_type TYPE INTEGER USING NULL;
