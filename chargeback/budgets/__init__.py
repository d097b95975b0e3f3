"""Monthly budgets per tenant: month-to-date priced as the invoice will be, each threshold
crossing mailed to the tenant and posted as a webhook exactly once."""
