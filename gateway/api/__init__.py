"""The inbound REST API (`/v1/*`), authenticated by API key."""
