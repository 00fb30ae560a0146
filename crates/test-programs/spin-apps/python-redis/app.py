"""A Spin Redis trigger component written against the Spin Python SDK: it
exports the async `spin:redis/inbound-redis@3.0.0` (the SDK's `RedisHandler`)
and writes each message `<key>=<value>` back to the Redis server named by the
`redis_address` variable, as `py:<key>`, through the SDK's async outbound
Redis (`spin:redis/redis@3.0.0`). A message that is not `key=value` raises,
so that the trigger's handling of a failing guest can be seen."""

from spin_sdk import redis, variables
from spin_sdk.wit import exports


class RedisHandler(exports.RedisHandler):
    async def handle_message(self, message: bytes) -> None:
        text = message.decode("utf-8")
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"not key=value: {text}")
        address = await variables.get("redis_address")
        connection = await redis.open(address)
        await connection.set(f"py:{key}", value.encode("utf-8"))
