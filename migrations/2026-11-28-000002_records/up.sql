-- The seller's data as copied from Temu: shops, orders (parent) with their items (child orders),
-- products with their SKUs, and after-sales. Natural keys are unique per shop. Each record keeps
-- its raw JSON exactly once (children live inside their parent's raw); typed columns are for
-- queries. Times are timestamptz (UTC); money is numeric next to its currency.

CREATE TABLE shops (
    id          BIGSERIAL PRIMARY KEY,
    -- The shop's name in our configuration (`shops[].name`).
    name        TEXT NOT NULL UNIQUE,
    region      TEXT NOT NULL,
    mall_id     TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                       BIGSERIAL PRIMARY KEY,
    shop_id                  BIGINT NOT NULL REFERENCES shops (id),
    parent_order_sn          TEXT NOT NULL,
    status                   INTEGER,
    order_time               TIMESTAMPTZ,
    -- Temu's updateTime: upserts never replace a row with an older one.
    updated_at               TIMESTAMPTZ NOT NULL,
    expect_ship_latest_time  TIMESTAMPTZ,
    region_id                BIGINT,
    site_id                  BIGINT,
    raw                      JSONB NOT NULL,
    first_seen_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_synced_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_shop_sn UNIQUE (shop_id, parent_order_sn)
);
CREATE INDEX orders_shop_updated ON orders (shop_id, updated_at);

-- Child orders, each with its first product (the whole productList stays in the parent's raw).
CREATE TABLE order_items (
    id                                 BIGSERIAL PRIMARY KEY,
    order_id                           BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    shop_id                            BIGINT NOT NULL REFERENCES shops (id),
    order_sn                           TEXT NOT NULL,
    goods_id                           TEXT,
    sku_id                             TEXT,
    status                             INTEGER,
    quantity                           BIGINT,
    original_quantity                  BIGINT,
    canceled_quantity_before_shipment  BIGINT,
    fulfillment_type                   INTEGER,
    product_sku_id                     TEXT,
    product_id                         TEXT,
    ext_code                           TEXT,
    CONSTRAINT order_items_shop_sn UNIQUE (shop_id, order_sn)
);
CREATE INDEX order_items_order ON order_items (order_id);

CREATE TABLE products (
    id                BIGSERIAL PRIMARY KEY,
    shop_id           BIGINT NOT NULL REFERENCES shops (id),
    goods_id          TEXT NOT NULL,
    name              TEXT,
    out_goods_sn      TEXT,
    quantity          BIGINT,
    price             NUMERIC,
    currency          TEXT,
    raw               JSONB NOT NULL,
    -- Soft delete: set when a full products run no longer lists the product; cleared when seen again.
    removed_at        TIMESTAMPTZ,
    -- The sync run that last listed this product (sync_runs.id; no foreign key so runs can be pruned).
    last_seen_run_id  BIGINT,
    first_seen_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_synced_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT products_shop_goods UNIQUE (shop_id, goods_id)
);
CREATE INDEX products_shop_present ON products (shop_id) WHERE removed_at IS NULL;

CREATE TABLE product_skus (
    id          BIGSERIAL PRIMARY KEY,
    product_id  BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    shop_id     BIGINT NOT NULL REFERENCES shops (id),
    sku_id      TEXT NOT NULL,
    sku_sn      TEXT,
    stock       BIGINT,
    spec        JSONB,
    CONSTRAINT product_skus_shop_sku UNIQUE (shop_id, sku_id)
);
CREATE INDEX product_skus_product ON product_skus (product_id);

CREATE TABLE aftersales (
    id                     BIGSERIAL PRIMARY KEY,
    shop_id                BIGINT NOT NULL REFERENCES shops (id),
    parent_after_sales_sn  TEXT NOT NULL,
    parent_order_sn        TEXT,
    status_group           INTEGER,
    type                   INTEGER,
    created_at_temu        TIMESTAMPTZ,
    -- Temu's updateAt: upserts never replace a row with an older one.
    updated_at             TIMESTAMPTZ NOT NULL,
    raw                    JSONB NOT NULL,
    first_seen_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_synced_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT aftersales_shop_sn UNIQUE (shop_id, parent_after_sales_sn)
);
CREATE INDEX aftersales_shop_updated ON aftersales (shop_id, updated_at);
CREATE INDEX aftersales_shop_order ON aftersales (shop_id, parent_order_sn);
