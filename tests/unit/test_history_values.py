from decimal import Decimal

from dropship.history import _from_item, _to_item


def test_floats_round_trip_through_dynamodb_types() -> None:
    # Given values with floats, also nested (durations, smoke latencies)
    values = {"duration_s": 1.25, "smoke": [{"latency_ms": 12.5, "status": 200}], "count": 3}
    # When serialised for DynamoDB and read back
    item = _to_item(values)
    assert item["duration_s"] == {"N": str(Decimal("1.25"))}
    # Then they come back as the same plain numbers
    assert _from_item(item) == values
