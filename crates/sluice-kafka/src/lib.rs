//! Kafka for Sluice.
