"""The bus layer: wire link, arbiter, read planner, reader, scanner, link statistics, ports, ids."""
