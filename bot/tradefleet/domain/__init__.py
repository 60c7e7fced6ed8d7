"""Pure domain core: no I/O, no clocks, no asyncio. Everything here is synchronous and deterministic."""
