"""The INVITE times the SIP edge benchmark reads from sipp's message trace."""

from bench.sipedge import invite_times

RULE = "-" * 47


def traced(stamp: str, way: str, message: str) -> str:
    head = (
        "UDP message sent (300 bytes):" if way == "sent" else "UDP message received [300] bytes :"
    )
    return f"{RULE} 2026-12-07 {stamp}\n{head}\n\n{message}\n\n"


def invite(call_id: str, header: str = "Call-ID") -> str:
    return f"INVITE sip:+4940123499@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP x\n{header}: {call_id}\n"


def answer(call_id: str, status: str) -> str:
    return f"SIP/2.0 {status}\nVia: SIP/2.0/UDP x\nCall-ID: {call_id}\nCSeq: 1 INVITE\n"


def test_each_answered_call_is_timed_from_its_first_invite_to_its_first_final_answer():
    trace = "".join(
        [
            traced("23:00:00.000100", "sent", invite("a")),
            traced("23:00:00.000600", "received", answer("a", "100 Trying")),
            traced("23:00:00.001000", "sent", invite("b", header="i")),  # the compact form
            traced("23:00:00.003350", "received", answer("a", "486 Busy Here")),
            traced("23:00:00.003400", "sent", "ACK sip:x SIP/2.0\nCall-ID: a\n"),
            traced("23:00:00.500100", "sent", invite("a")),  # a retransmission
            traced("23:00:00.600000", "received", answer("a", "486 Busy Here")),
            traced("23:00:00.001500", "sent", invite("unanswered")),
            traced("23:00:00.011000", "received", answer("b", "200 OK")),
        ]
    )
    assert [round(ms, 3) for ms in invite_times(trace)] == [3.25, 10.0]


def test_a_trace_with_nothing_answered_times_nothing():
    assert invite_times("") == []
    assert invite_times(traced("23:00:00.000100", "sent", invite("a"))) == []
