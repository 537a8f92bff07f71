"""What test directories share, so none imports another's conftest or test module for it:

- stack.py: the whole stack on 127.0.0.1 (`stack`, `hooks` fixtures), a plugin the root
  conftest registers;
- party_line.py: helpers for plays with a call step (reps, rules, driving the sandbox's phones);
- tenants.py: an account as a tenant (`Tenant`, `new_tenant`);
- webhook_endpoint.py: a customer's webhook endpoint that records and answers, stoppable;
- servers.py: any ASGI app under uvicorn on a bound port; ports.py: a free port for the rest;
- databases.py: the session's database and its per-test copies;
- sql.py: the SQL statements run meanwhile (`statements`);
- browser.py: headless Chromium under Selenium for page tests (`browser` fixture), a plugin.
"""
