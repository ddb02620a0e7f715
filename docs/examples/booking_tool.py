"""An example environment tool: a tiny booking system whose state persists across calls."""

STATE = {"bookings": {}, "next_id": 1}

FLIGHTS = {"AF1234": {"origin": "CDG", "destination": "FCO", "seats": 2}}


def book_flight(flight_id: str, passenger: str) -> dict:
    flight = FLIGHTS.get(flight_id)
    if flight is None:
        raise ValueError(f"unknown flight {flight_id}")
    booking_id = f"BK{STATE['next_id']:04d}"
    STATE["next_id"] += 1
    STATE["bookings"][booking_id] = {"flight_id": flight_id, "passenger": passenger}
    return {"booking_id": booking_id, "flight": flight_id, "passenger": passenger}


def get_weather(city: str) -> dict:
    # Mock data embedded in the tool, as environment synthesis writes it.
    temperatures = {"Paris": 14.5, "Rome": 19.0}
    return {"city": city, "temperature_c": temperatures.get(city)}
