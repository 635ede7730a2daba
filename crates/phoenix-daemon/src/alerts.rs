//! Alert incidents, receivers and delivery from the durable outbox (issue 8).
