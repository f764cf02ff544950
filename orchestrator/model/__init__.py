"""The declared source model: how the company's own warehouse tables map to the roles the
pipeline needs (customers, events, consents, privacy requests), and the canonical views the
product renders from that declaration in its own schema."""
