DROP TABLE app_budget_members;
