"""Delivery of report outputs (SR to the PACS, ORU to the RIS) from the outbox."""
