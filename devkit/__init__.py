"""What the tests and the benchmarks share: the fleet's processes started and stopped, a RabbitMQ
vhost of their own, WhatsApp payloads, a recording job publisher, seeded dead letters. Nothing of
the product imports it, and it imports neither the tests nor the benchmarks."""
