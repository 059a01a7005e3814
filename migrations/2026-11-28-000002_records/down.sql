DROP TABLE aftersales;
DROP TABLE product_skus;
DROP TABLE products;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE shops;
