#!/usr/bin/env python3
"""Generate src/codec/method.rs from the AMQP 0-9-1 spec XML.

Usage (from the crate root):

    python3 scripts/gen_methods.py > src/codec/method.rs
    rustfmt --edition 2021 src/codec/method.rs

The input is RabbitMQ's extended 0-9-1 spec, vendored as
spec/amqp0-9-1.stripped.extended.xml (a copy of the file Debian's
`amqp-specs` package ships in /usr/share/amqp/specs/0-9-1-rabbit/); another
path can be given as the first argument. That file is "stripped" (it has no
doc text) and lacks the connection.blocked/unblocked and
connection.update-secret(-ok) extensions, so those methods and every doc
comment are written out below, in our own words.

The output is plain Rust with no dependency on this script at build time; the
script only needs Python 3's standard library.
"""

import os
import sys
import xml.etree.ElementTree as ET

# The vendored spec, found from this script's own location so that the
# generator runs from any working directory.
DEFAULT_SPEC = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "spec", "amqp0-9-1.stripped.extended.xml"
)

# ---------------------------------------------------------------------------
# Methods the XML does not have (RabbitMQ extensions). Each entry:
# (class, method, index, synchronous, responses, fields[(name, type)])
EXTRA_METHODS = [
    ("connection", "blocked", 60, False, [], [("reason", "shortstr")]),
    ("connection", "unblocked", 61, False, [], []),
    (
        "connection",
        "update-secret",
        70,
        True,
        ["update-secret-ok"],
        [("new-secret", "longstr"), ("reason", "shortstr")],
    ),
    ("connection", "update-secret-ok", 71, True, [], []),
]

# Responses the stripped XML leaves out: basic.recover is answered by
# basic.recover-ok (RabbitMQ and every client treat it as synchronous).
EXTRA_RESPONSES = {("basic", "recover"): ["recover-ok"]}

# The ids every method must have; checked against the XML so a different
# spec file cannot silently renumber anything.
EXPECTED_IDS = {
    "connection": (10, {"start": 10, "start-ok": 11, "secure": 20, "secure-ok": 21,
                        "tune": 30, "tune-ok": 31, "open": 40, "open-ok": 41,
                        "close": 50, "close-ok": 51, "blocked": 60, "unblocked": 61,
                        "update-secret": 70, "update-secret-ok": 71}),
    "channel": (20, {"open": 10, "open-ok": 11, "flow": 20, "flow-ok": 21,
                     "close": 40, "close-ok": 41}),
    "exchange": (40, {"declare": 10, "declare-ok": 11, "delete": 20, "delete-ok": 21,
                      "bind": 30, "bind-ok": 31, "unbind": 40, "unbind-ok": 51}),
    "queue": (50, {"declare": 10, "declare-ok": 11, "bind": 20, "bind-ok": 21,
                   "purge": 30, "purge-ok": 31, "delete": 40, "delete-ok": 41,
                   "unbind": 50, "unbind-ok": 51}),
    "basic": (60, {"qos": 10, "qos-ok": 11, "consume": 20, "consume-ok": 21,
                   "cancel": 30, "cancel-ok": 31, "publish": 40, "return": 50,
                   "deliver": 60, "get": 70, "get-ok": 71, "get-empty": 72,
                   "ack": 80, "reject": 90, "recover-async": 100, "recover": 110,
                   "recover-ok": 111, "nack": 120}),
    "tx": (90, {"select": 10, "select-ok": 11, "commit": 20, "commit-ok": 21,
                "rollback": 30, "rollback-ok": 31}),
    "confirm": (85, {"select": 10, "select-ok": 11}),
}

# ---------------------------------------------------------------------------
# Doc text (our own wording). Method docs are keyed "class.method".
METHOD_DOCS = {
    "connection.start": "The server proposes a protocol version, SASL mechanisms and locales, and describes itself.",
    "connection.start-ok": "The client picks a SASL mechanism and a locale, sends its initial response and describes itself.",
    "connection.secure": "The server sends a SASL challenge for the chosen mechanism.",
    "connection.secure-ok": "The client answers a SASL challenge.",
    "connection.tune": "The server proposes connection limits: channels, frame size and heartbeat interval.",
    "connection.tune-ok": "The client states the limits it will use, none above what the server proposed.",
    "connection.open": "The client opens the connection to a virtual host.",
    "connection.open-ok": "The server confirms that the connection is open and ready for channels.",
    "connection.close": "Either peer asks to close the connection, giving the reason and, after an error, the method that caused it.",
    "connection.close-ok": "Confirms a `connection.close`; the socket may then be closed.",
    "connection.blocked": "RabbitMQ extension: the server has stopped reading from this connection's publishers (for example during a resource alarm).",
    "connection.unblocked": "RabbitMQ extension: the server reads from this connection again.",
    "connection.update-secret": "RabbitMQ extension: the client replaces the secret (for example an expiring OAuth 2 token) of the open connection.",
    "connection.update-secret-ok": "RabbitMQ extension: the server accepted the new secret.",
    "channel.open": "The client opens a channel.",
    "channel.open-ok": "The server confirms that the channel is open.",
    "channel.flow": "Asks the peer to stop (`active` false) or resume (`active` true) sending content on this channel.",
    "channel.flow-ok": "Confirms a `channel.flow`, stating the flow state now in effect.",
    "channel.close": "Either peer asks to close the channel, giving the reason and, after an error, the method that caused it.",
    "channel.close-ok": "Confirms a `channel.close`; the channel number may then be reused.",
    "exchange.declare": "Creates an exchange if it does not exist, or checks that an existing one has the same settings.",
    "exchange.declare-ok": "Confirms an `exchange.declare`.",
    "exchange.delete": "Deletes an exchange and all of its bindings.",
    "exchange.delete-ok": "Confirms an `exchange.delete`.",
    "exchange.bind": "RabbitMQ extension: binds an exchange (the destination) to another exchange (the source).",
    "exchange.bind-ok": "RabbitMQ extension: confirms an `exchange.bind`.",
    "exchange.unbind": "RabbitMQ extension: removes a binding between two exchanges.",
    "exchange.unbind-ok": "RabbitMQ extension: confirms an `exchange.unbind`.",
    "queue.declare": "Creates a queue if it does not exist, or checks that an existing one has the same settings.",
    "queue.declare-ok": "Confirms a `queue.declare` with the queue's name (generated by the server when the request left it empty) and its counts.",
    "queue.bind": "Binds a queue to an exchange.",
    "queue.bind-ok": "Confirms a `queue.bind`.",
    "queue.purge": "Removes every message of a queue that is not awaiting an acknowledgement.",
    "queue.purge-ok": "Confirms a `queue.purge` with the number of messages removed.",
    "queue.delete": "Deletes a queue; the messages it held are dead-lettered or dropped.",
    "queue.delete-ok": "Confirms a `queue.delete` with the number of messages deleted.",
    "queue.unbind": "Removes a binding between a queue and an exchange.",
    "queue.unbind-ok": "Confirms a `queue.unbind`.",
    "basic.qos": "Limits how many messages (or bytes of messages) the server sends ahead of acknowledgements.",
    "basic.qos-ok": "Confirms a `basic.qos`.",
    "basic.consume": "Starts a consumer on a queue.",
    "basic.consume-ok": "Confirms a `basic.consume` with the consumer tag (generated by the server when the request left it empty).",
    "basic.cancel": "Ends a consumer; RabbitMQ also sends it to the client when the queue consumed from goes away.",
    "basic.cancel-ok": "Confirms a `basic.cancel`.",
    "basic.publish": "Publishes a message; a content header and body frames follow the method.",
    "basic.return": "The server hands back a published message it could not route or deliver; content follows.",
    "basic.deliver": "The server delivers a message to a consumer; content follows.",
    "basic.get": "Fetches a single message from a queue.",
    "basic.get-ok": "Answers a `basic.get` with a message; content follows.",
    "basic.get-empty": "Answers a `basic.get` when the queue holds no message.",
    "basic.ack": "Acknowledges one or more deliveries; in confirm mode the server sends it to confirm publishes.",
    "basic.reject": "Rejects one delivery, requeueing it or discarding (dead-lettering) it.",
    "basic.recover-async": "Deprecated: asks the server to redeliver the unacknowledged messages, with no reply.",
    "basic.recover": "Asks the server to redeliver every unacknowledged message of the channel.",
    "basic.recover-ok": "Confirms a `basic.recover`.",
    "basic.nack": "RabbitMQ extension: rejects one or more deliveries; in confirm mode the server sends it for publishes it could not take.",
    "tx.select": "Puts the channel in transaction mode.",
    "tx.select-ok": "Confirms a `tx.select`.",
    "tx.commit": "Commits the publishes and acknowledgements of the current transaction.",
    "tx.commit-ok": "Confirms a `tx.commit`.",
    "tx.rollback": "Abandons the publishes and acknowledgements of the current transaction.",
    "tx.rollback-ok": "Confirms a `tx.rollback`.",
    "confirm.select": "RabbitMQ extension: puts the channel in publisher-confirm mode.",
    "confirm.select-ok": "RabbitMQ extension: confirms a `confirm.select`.",
}

# Field docs, looked up as "class.method.field", then "class.field", then
# "field" (Rust field names).
FIELD_DOCS = {
    "version_major": "Major version of the protocol the server speaks (0).",
    "version_minor": "Minor version of the protocol the server speaks (9).",
    "server_properties": "Properties describing the server: product, version, platform, capabilities.",
    "mechanisms": "The SASL mechanisms the server accepts, separated by spaces (e.g. `PLAIN AMQPLAIN`).",
    "locales": "The message locales the server supports, separated by spaces (e.g. `en_US`).",
    "client_properties": "Properties describing the client: product, version, platform, capabilities.",
    "mechanism": "The SASL mechanism chosen among those the server offered.",
    "response": "SASL response data for the chosen mechanism (opaque bytes).",
    "locale": "The message locale chosen among those the server offered.",
    "challenge": "SASL challenge data for the client to answer (opaque bytes).",
    "connection.tune.channel_max": "Highest channel number the server allows; 0 means no limit.",
    "connection.tune-ok.channel_max": "Highest channel number the client will use; 0 means no limit.",
    "connection.tune.frame_max": "Largest frame, in bytes including header and frame end, the server accepts; 0 means no limit.",
    "connection.tune-ok.frame_max": "Largest frame, in bytes including header and frame end, the client will send; 0 means no limit.",
    "connection.tune.heartbeat": "Heartbeat interval in seconds the server would like; 0 disables heartbeats.",
    "connection.tune-ok.heartbeat": "Heartbeat interval in seconds the client will use; 0 disables heartbeats.",
    "virtual_host": "The virtual host to work in.",
    "reply_code": "Reply code: 200 for a normal close, otherwise the error (see [`reply_code`](super::reply_code)).",
    "reply_text": "Human-readable text explaining the reply code.",
    "class_id": "Class id of the method that caused the close, or 0.",
    "method_id": "Method id of the method that caused the close, or 0.",
    "connection.blocked.reason": "Why the connection is blocked (e.g. `low on memory`).",
    "connection.update-secret.reason": "Why the secret is being replaced, for the server's log.",
    "new_secret": "The new secret, such as a refreshed OAuth 2 token.",
    "channel.flow.active": "True to let the peer send content, false to ask it to stop.",
    "channel.flow-ok.active": "The flow state the sender now applies.",
    "exchange.declare.exchange": "Name of the exchange to declare.",
    "exchange.delete.exchange": "Name of the exchange to delete.",
    "queue.bind.exchange": "The exchange to bind the queue to.",
    "queue.unbind.exchange": "The exchange the binding to remove routes from.",
    "basic.publish.exchange": "The exchange to publish to; empty for the default exchange.",
    "exchange": "The exchange the message was originally published to.",
    "kind": "The exchange type, the spec's `type` (e.g. `direct`, `fanout`, `topic`, `headers`).",
    "exchange.passive": "Only check that the exchange exists (failing if it does not); never create it.",
    "queue.passive": "Only check that the queue exists (failing if it does not); never create it.",
    "exchange.durable": "The exchange survives a broker restart.",
    "queue.durable": "The queue survives a broker restart.",
    "exchange.auto_delete": "Delete the exchange once its last binding is removed.",
    "queue.auto_delete": "Delete the queue once its last consumer is cancelled.",
    "internal": "Clients cannot publish to the exchange; only other exchanges route to it.",
    "no_wait": "Ask the peer not to reply; the sender must not wait for a response.",
    "exchange.declare.arguments": "Optional, broker-specific exchange arguments (e.g. `alternate-exchange`).",
    "queue.declare.arguments": "Optional, broker-specific queue arguments (e.g. `x-message-ttl`, `x-queue-type`).",
    "basic.consume.arguments": "Optional, broker-specific consumer arguments (e.g. `x-priority`).",
    "arguments": "Binding arguments, such as the header matches of a headers exchange.",
    "exchange.if_unused": "Delete the exchange only if it has no bindings.",
    "queue.if_unused": "Delete the queue only if it has no consumers.",
    "if_empty": "Delete the queue only if it holds no messages.",
    "destination": "The exchange that receives messages through the binding.",
    "source": "The exchange messages are routed from.",
    "exchange.bind.routing_key": "Binding key matched against the routing keys of messages.",
    "queue.bind.routing_key": "Binding key matched against the routing keys of messages.",
    "exchange.unbind.routing_key": "Binding key of the binding to remove.",
    "queue.unbind.routing_key": "Binding key of the binding to remove.",
    "basic.publish.routing_key": "Routing key the exchange routes the message by.",
    "routing_key": "Routing key the message was published with.",
    "queue.declare.queue": "Name of the queue; empty asks the server to generate one.",
    "queue.declare-ok.queue": "Name of the queue (the generated one when the request left it empty).",
    "queue.bind.queue": "The queue to bind.",
    "queue.unbind.queue": "The queue whose binding to remove.",
    "queue.purge.queue": "The queue to purge.",
    "queue.delete.queue": "The queue to delete.",
    "basic.consume.queue": "The queue to consume from.",
    "basic.get.queue": "The queue to fetch from.",
    "queue.exclusive": "Only this connection may use the queue, which is deleted when the connection closes.",
    "basic.consume.exclusive": "Only this consumer may consume from the queue.",
    "queue.declare-ok.message_count": "Number of messages ready in the queue.",
    "queue.purge-ok.message_count": "Number of messages purged.",
    "queue.delete-ok.message_count": "Number of messages deleted with the queue.",
    "basic.get-ok.message_count": "Number of messages left in the queue.",
    "consumer_count": "Number of active consumers on the queue.",
    "prefetch_size": "Limit, in bytes of bodies, on unacknowledged messages; 0 means none.",
    "prefetch_count": "Limit on the number of unacknowledged messages; 0 means none.",
    "global": "RabbitMQ: share the limit across the whole channel instead of applying it to each new consumer.",
    "basic.consume.consumer_tag": "Tag naming the consumer on this channel; empty asks the server to generate one.",
    "consumer_tag": "Tag of the consumer.",
    "no_local": "Do not deliver messages published on this connection (RabbitMQ ignores it).",
    "no_ack": "The server counts messages as acknowledged as soon as it sends them.",
    "mandatory": "Return the message with `basic.return` if no queue receives it.",
    "immediate": "Return the message if no consumer can take it at once (RabbitMQ refuses this flag).",
    "basic.deliver.delivery_tag": "Number of this delivery on the channel, used to acknowledge it.",
    "basic.get-ok.delivery_tag": "Number of this delivery on the channel, used to acknowledge it.",
    "basic.reject.delivery_tag": "Delivery tag of the message rejected.",
    "delivery_tag": "Delivery tag acknowledged, or with `multiple` the highest one.",
    "redelivered": "The message was delivered before and may have been processed already.",
    "multiple": "Covers every outstanding delivery tag up to and including `delivery_tag`.",
    "basic.reject.requeue": "Put the message back in the queue instead of discarding or dead-lettering it.",
    "basic.nack.requeue": "Put the messages back in the queue instead of discarding or dead-lettering them.",
    "requeue": "Requeue the messages, possibly for other consumers, instead of redelivering them to their original consumer.",
}

# Names the reserved fields had in 0-8, for the comments in the generated code.
RESERVED_MEANING = {
    ("connection", "open", "reserved-1"): "capabilities",
    ("connection", "open", "reserved-2"): "insist",
    ("connection", "open-ok", "reserved-1"): "known-hosts",
    ("channel", "open", "reserved-1"): "out-of-band",
    ("channel", "open-ok", "reserved-1"): "channel-id",
    ("basic", "get-empty", "reserved-1"): "cluster-id",
}


# Fields holding credentials: the generated `Debug` shows only their length,
# so logging a method never leaks a password or token.
SECRET_FIELDS = {
    ("connection", "start-ok", "response"),
    ("connection", "secure-ok", "response"),
    ("connection", "update-secret", "new-secret"),
}


# Descriptive text the server writes, decoded lossily (invalid UTF-8 becomes
# U+FFFD): RabbitMQ cuts reply texts at 255 bytes, sometimes inside a
# multi-byte character, and such a text must not end the connection with a
# syntax error. Names (queues, exchanges, consumer tags) stay strict.
LOSSY_FIELDS = {
    ("connection", "close", "reply-text"),
    ("channel", "close", "reply-text"),
    ("basic", "return", "reply-text"),
    ("connection", "blocked", "reason"),
    ("connection", "update-secret", "reason"),
}


def is_lossy(m, f):
    return (m.cls, m.name, f.spec_name) in LOSSY_FIELDS


def secret_fields(m):
    return [f for f in m.public_fields if (m.cls, m.name, f.spec_name) in SECRET_FIELDS]


def camel(s):
    return "".join(p.capitalize() for p in s.split("-"))


def rust_field(name):
    if name == "type":
        return "kind"
    if name in ("nowait", "no-wait"):
        return "no_wait"
    return name.replace("-", "_")


RUST_TYPE = {
    "octet": "u8",
    "short": "u16",
    "long": "u32",
    "longlong": "u64",
    "bit": "bool",
    "shortstr": "ShortString",
    "longstr": "Bytes",
    "table": "FieldTable",
    "timestamp": "u64",
}


class Field:
    def __init__(self, name, typ, reserved):
        self.spec_name = name
        self.name = rust_field(name)
        self.typ = typ
        self.reserved = reserved


class Meth:
    def __init__(self, cls, cls_id, name, index, synchronous, content, responses, fields):
        self.cls = cls
        self.cls_id = cls_id
        self.name = name
        self.index = index
        self.synchronous = synchronous
        self.content = content
        self.responses = responses
        self.fields = fields

    @property
    def full(self):
        return f"{self.cls}.{self.name}"

    @property
    def rust(self):
        return camel(self.cls) + camel(self.name)

    @property
    def public_fields(self):
        return [f for f in self.fields if not f.reserved]

    def has_field(self, name):
        return any(f.name == name for f in self.public_fields)


def field_doc(m, f):
    for key in (f"{m.cls}.{m.name}.{f.name}", f"{m.cls}.{f.name}", f.name):
        if key in FIELD_DOCS:
            return FIELD_DOCS[key]
    raise SystemExit(f"no doc for field {m.full}.{f.name}")


def load(path):
    root = ET.parse(path).getroot()
    domains = {d.get("name"): d.get("type") for d in root.findall("domain")}
    methods = []
    seen = set()
    for c in root.findall("class"):
        cls = c.get("name")
        cls_id = int(c.get("index"))
        for m in c.findall("method"):
            fields = []
            for f in m.findall("field"):
                typ = f.get("type") or domains[f.get("domain")]
                fields.append(Field(f.get("name"), typ, f.get("reserved") == "1"))
            responses = [r.get("name") for r in m.findall("response")]
            responses += EXTRA_RESPONSES.get((cls, m.get("name")), [])
            methods.append(
                Meth(cls, cls_id, m.get("name"), int(m.get("index")),
                     m.get("synchronous") == "1", m.get("content") == "1",
                     responses, fields)
            )
            seen.add((cls, m.get("name")))
    class_ids = {m.cls: m.cls_id for m in methods}
    for cls, name, index, sync, responses, fields in EXTRA_METHODS:
        if (cls, name) in seen:
            continue
        methods.append(
            Meth(cls, class_ids[cls], name, index, sync, False, responses,
                 [Field(n, t, False) for n, t in fields])
        )
    # Check every id against the table above, both ways.
    got = {(m.cls, m.name): (m.cls_id, m.index) for m in methods}
    want = {(c, n): (cid, mid) for c, (cid, ms) in EXPECTED_IDS.items() for n, mid in ms.items()}
    if got != want:
        raise SystemExit(f"method ids differ from the expected table: {sorted(set(got.items()) ^ set(want.items()))}")
    methods.sort(key=lambda m: (m.cls_id, m.index))
    for m in methods:
        if m.full not in METHOD_DOCS:
            raise SystemExit(f"no doc for method {m.full}")
    return methods


def bit_groups(fields):
    """Split fields into runs: ('bits', [fields]) or ('one', field)."""
    out = []
    for f in fields:
        if f.typ == "bit":
            if out and out[-1][0] == "bits":
                out[-1][1].append(f)
            else:
                out.append(("bits", [f]))
        else:
            out.append(("one", f))
    return out


def reserved_note(m, f):
    meaning = RESERVED_MEANING.get((m.cls, m.name, f.spec_name), "ticket" if f.typ == "short" else None)
    return f"{f.spec_name}" + (f" (was {meaning})" if meaning else "")


# Methods whose structs are larger than 112 bytes: boxed in `Method`, so that
# `Method` is at most 120 bytes and `Frame` at most 128 (moved inline, not by
# a call to memcpy). All are rare, client-sent methods.
BOXED = {"ConnectionStartOk", "ExchangeBind", "ExchangeUnbind", "QueueBind", "QueueUnbind"}


def boxed(m, expr):
    return f"Box::new({expr})" if m.rust in BOXED else expr


def gen_decode(m, out):
    what = lambda f: f'"{m.full} {f.spec_name}"'
    out.append("    #[inline(always)]")
    out.append("    pub(crate) fn decode_args(r: &mut Reader<'_>) -> Result<Self, CodecError> {")
    for kind, item in bit_groups(m.fields):
        if kind == "bits":
            public = [f for f in item if not f.reserved]
            if not public:
                out.append(f'        r.u8("{m.full} flags")?; // {", ".join(reserved_note(m, f) for f in item)}')
                continue
            out.append(f'        let flags = r.u8("{m.full} flags")?;')
            for i, f in enumerate(item):
                if not f.reserved:
                    out.append(f"        let {f.name} = (flags & 0x{1 << i:02x}) != 0;")
            continue
        f = item
        if f.reserved:
            note = reserved_note(m, f)
            if f.typ == "short":
                out.append(f"        r.u16({what(f)})?; // {note}")
            elif f.typ == "shortstr":
                out.append(f"        skip_shortstr(r, {what(f)})?; // {note}")
            elif f.typ == "longstr":
                out.append(f"        skip_longstr(r, {what(f)})?; // {note}")
            else:
                raise SystemExit(f"reserved field of type {f.typ}")
            continue
        reader = {
            "octet": f"r.u8({what(f)})?",
            "short": f"r.u16({what(f)})?",
            "long": f"r.u32({what(f)})?",
            "longlong": f"r.u64({what(f)})?",
            "timestamp": f"r.u64({what(f)})?",
            "shortstr": f"r.shortstr({what(f)})?",
            "longstr": f"r.longstr({what(f)})?",
            "table": "FieldTable::decode(r)?",
        }[f.typ]
        if is_lossy(m, f):
            if f.typ != "shortstr":
                raise SystemExit(f"lossy field of type {f.typ}")
            reader = f"r.shortstr_lossy({what(f)})?"
        out.append(f"        let {f.name} = {reader};")
    if m.public_fields:
        names = ", ".join(f.name for f in m.public_fields)
        out.append(f"        Ok({m.rust} {{ {names} }})")
    else:
        out.append(f"        Ok({m.rust})")
    out.append("    }")


def gen_encode(m, out):
    out.append("    fn encode_args(&self, dst: &mut BytesMut) -> Result<(), CodecError> {")
    for kind, item in bit_groups(m.fields):
        if kind == "bits":
            parts = []
            for i, f in enumerate(item):
                if f.reserved:
                    continue
                parts.append(f"u8::from(self.{f.name})" + (f" << {i}" if i else ""))
            if not parts:
                out.append(f'        dst.put_u8(0); // {", ".join(reserved_note(m, f) for f in item)}')
            elif len(parts) == 1:
                out.append(f"        dst.put_u8({parts[0]});")
            else:
                joined = " | ".join(f"({p})" if "<<" in p else p for p in parts)
                out.append(f"        dst.put_u8({joined});")
            continue
        f = item
        if f.reserved:
            note = reserved_note(m, f)
            put = {"short": "dst.put_u16(0);", "shortstr": "dst.put_u8(0);", "longstr": "dst.put_u32(0);"}[f.typ]
            out.append(f"        {put} // {note}")
            continue
        writer = {
            "octet": f"dst.put_u8(self.{f.name});",
            "short": f"dst.put_u16(self.{f.name});",
            "long": f"dst.put_u32(self.{f.name});",
            "longlong": f"dst.put_u64(self.{f.name});",
            "timestamp": f"dst.put_u64(self.{f.name});",
            "shortstr": f"put_shortstr(dst, self.{f.name}.as_bytes())?;",
            "longstr": f"put_longstr(dst, &self.{f.name})?;",
            "table": f"self.{f.name}.encode(dst)?;",
        }[f.typ]
        out.append(f"        {writer}")
    out.append("        Ok(())")
    out.append("    }")


def method_by(methods, cls, name):
    for m in methods:
        if m.cls == cls and m.name == name:
            return m
    raise KeyError((cls, name))


# The method structs `src/lib.rs` re-exports at the crate root, public
# without the `unstable` feature (which makes all of `codec::method`
# public): their docs link only to each other, else a default-features
# `cargo doc` reports links to private items.
ROOT_PUBLIC = {
    "ExchangeBind", "ExchangeDeclare", "ExchangeDelete", "ExchangeUnbind", "QueueBind",
    "QueueDeclare", "QueueDeclareOk", "QueueDelete", "QueueUnbind",
}


def response_ref(m, r):
    """A doc link to response `r` of `m`, or its AMQP name when the link
    would point from a root-public struct to one that is not."""
    if m.rust in ROOT_PUBLIC and r.rust not in ROOT_PUBLIC:
        return f"`{r.full}`"
    return f"[`{r.rust}`]"


def struct_doc(m, methods):
    lines = [f"/// {METHOD_DOCS[m.full]}"]
    extra = [f"`{m.full}`: class {m.cls_id}, method {m.index}."]
    if m.responses:
        links = " or ".join(response_ref(m, method_by(methods, m.cls, r)) for r in m.responses)
        cond = " unless `no_wait` is set" if m.has_field("no_wait") else ""
        extra.append(f"Answered with {links}{cond}.")
    if m.content:
        extra.append("Carries content: a content header frame and body frames follow it.")
    for f in secret_fields(m):
        extra.append(f"Its `Debug` output shows only the length of `{f.name}`, never the secret itself.")
    if any(f.reserved for f in m.fields):
        reserved = [reserved_doc(m, f) for f in m.fields if f.reserved]
        if len(reserved) == 1:
            extra.append(f"The reserved field {reserved[0]} is not kept: it is written as zero or empty and skipped when read.")
        else:
            joined = ", ".join(reserved[:-1]) + " and " + reserved[-1]
            extra.append(f"The reserved fields {joined} are not kept: they are written as zero or empty and skipped when read.")
    lines.append("///")
    lines.append("/// " + " ".join(extra))
    return lines


def reserved_doc(m, f):
    meaning = RESERVED_MEANING.get((m.cls, m.name, f.spec_name), "ticket" if f.typ == "short" else None)
    return f"`{f.spec_name}`" + (f" (formerly {meaning})" if meaning else "")


def test_value(m, f, k):
    t = f.typ
    if t == "octet":
        return f"0x{(0x11 * (k + 1)) & 0xff:02x}"
    if t == "short":
        return f"0x{0x1234 + k:04x}"
    if t == "long":
        return f"0x{0x1234_5678 + k:08x}"
    if t in ("longlong", "timestamp"):
        return f"0x0102_0304_0506_{0x0708 + k:04x}"
    if t == "bit":
        return "true"
    if t == "shortstr":
        return f'ShortString::from("{m.full}.{f.spec_name} é")'
    if t == "longstr":
        return f'Bytes::from_static(b"{f.spec_name}\\x00\\xff")'
    if t == "table":
        return "sample_table()"
    raise SystemExit(t)


def sample_expr(m):
    if not m.public_fields:
        return m.rust
    parts = [f"{f.name}: {test_value(m, f, k)}" for k, f in enumerate(m.public_fields)]
    return f"{m.rust} {{ {', '.join(parts)} }}"


def snake(m):
    return f"{m.cls}_{m.name}".replace("-", "_")


def generate(methods):
    o = []
    o.append(HEADER)
    # Structs.
    for m in methods:
        o.extend(struct_doc(m, methods))
        if secret_fields(m):
            o.append("#[derive(Clone, PartialEq, Default)]")
        else:
            o.append("#[derive(Debug, Clone, PartialEq, Default)]")
        if m.public_fields:
            o.append(f"pub struct {m.rust} {{")
            for f in m.public_fields:
                o.append(f"    /// {field_doc(m, f)}")
                if is_lossy(m, f):
                    o.append("    ///")
                    o.append("    /// Decoded leniently: bytes that are not UTF-8 (a character cut at")
                    o.append("    /// 255 bytes, say) become U+FFFD instead of failing the frame.")
                o.append(f"    pub {f.name}: {RUST_TYPE[f.typ]},")
            o.append("}")
        else:
            o.append(f"pub struct {m.rust};")
        o.append("")
        o.append(f"impl {m.rust} {{")
        o.append(f"    /// The class id of `{m.full}`: {m.cls_id} (`{m.cls}`).")
        o.append(f"    pub const CLASS_ID: u16 = {m.cls_id};")
        o.append(f"    /// The method id of `{m.full}` within its class: {m.index}.")
        o.append(f"    pub const METHOD_ID: u16 = {m.index};")
        o.append(f"    /// The method's name in the spec, `{m.full}`.")
        o.append(f'    pub const NAME: &\'static str = "{m.full}";')
        if m.fields:
            o.append("")
            gen_decode(m, o)
            o.append("")
            gen_encode(m, o)
        o.append("}")
        o.append("")
        if secret_fields(m):
            o.append(f"impl fmt::Debug for {m.rust} {{")
            o.append("    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {")
            o.append(f'        f.debug_struct("{m.rust}")')
            for f in m.public_fields:
                if f in secret_fields(m):
                    o.append(f'            .field("{f.name}", &Redacted(self.{f.name}.len()))')
                else:
                    o.append(f'            .field("{f.name}", &self.{f.name})')
            o.append("            .finish()")
            o.append("    }")
            o.append("}")
            o.append("")
        o.append(f"impl From<{m.rust}> for Method {{")
        o.append(f"    fn from(m: {m.rust}) -> Method {{")
        o.append(f"        Method::{m.rust}({boxed(m, 'm')})")
        o.append("    }")
        o.append("}")
        o.append("")

    # The enum.
    o.append("/// Any AMQP 0-9-1 method, with RabbitMQ's extensions: one variant per method struct.")
    o.append("///")
    o.append("/// [`Method::decode`] reads one from a method frame's payload and")
    o.append("/// [`Method::encode`] writes one; build a value from a struct with `From`.")
    o.append("#[derive(Debug, Clone, PartialEq)]")
    o.append("pub enum Method {")
    for m in methods:
        o.append(f"    /// `{m.full}`: see [`{m.rust}`].")
        if m.rust in BOXED:
            o.append("    ///")
            o.append("    /// Boxed: a large method a client sends now and then, kept out of line")
            o.append("    /// so that every `Method` (and `Frame`) stays small to move.")
            o.append(f"    {m.rust}(Box<{m.rust}>),")
        else:
            o.append(f"    {m.rust}({m.rust}),")
    o.append("}")
    o.append("")
    o.append("impl Method {")
    o.append(DECODE_DOC)
    o.append("    pub fn decode(payload: Bytes) -> Result<Method, CodecError> {")
    o.append("        Method::read(&mut Reader::new(&payload))")
    o.append("    }")
    o.append("")
    o.append(READ_DOC)
    o.append("    pub fn read(r: &mut Reader<'_>) -> Result<Method, CodecError> {")
    o.append('        let class_id = r.u16("method class id")?;')
    o.append('        let method_id = r.u16("method id")?;')
    o.append("        Ok(match (class_id, method_id) {")
    for m in methods:
        if m.fields:
            o.append(f"            ({m.cls_id}, {m.index}) => Method::{m.rust}({boxed(m, m.rust + '::decode_args(r)?')}),")
        else:
            o.append(f"            ({m.cls_id}, {m.index}) => Method::{m.rust}({m.rust}),")
    o.append("            _ => return Err(CodecError::UnknownMethod { class_id, method_id }),")
    o.append("        })")
    o.append("    }")
    o.append("")
    o.append(ENCODE_DOC)
    o.append("    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {")
    o.append("        let start = dst.len();")
    o.append("        dst.put_u16(self.class_id());")
    o.append("        dst.put_u16(self.method_id());")
    o.append("        let result = match self {")
    with_args = [m for m in methods if m.fields]
    without = [m for m in methods if not m.fields]
    for m in with_args:
        o.append(f"            Method::{m.rust}(m) => m.encode_args(dst),")
    o.append("            " + " | ".join(f"Method::{m.rust}(_)" for m in without) + " => Ok(()),")
    o.append("        };")
    o.append("        if result.is_err() {")
    o.append("            dst.truncate(start);")
    o.append("        }")
    o.append("        result")
    o.append("    }")
    o.append("")

    def by_class_arms(fn_name, doc, ret, value):
        o.append(doc)
        o.append(f"    pub fn {fn_name}(&self) -> {ret} {{")
        o.append("        match self {")
        for m in methods:
            o.append(f"            Method::{m.rust}(_) => {value(m)},")
        o.append("        }")
        o.append("    }")
        o.append("")

    by_class_arms("class_id", "    /// The class id of this method (e.g. 60 for `basic`).", "u16",
                  lambda m: f"{m.rust}::CLASS_ID")
    by_class_arms("method_id", "    /// The method id of this method within its class.", "u16",
                  lambda m: f"{m.rust}::METHOD_ID")
    by_class_arms("name", '    /// The spec\'s name of this method, e.g. `"basic.deliver"`.', "&'static str",
                  lambda m: f"{m.rust}::NAME")

    content = [m for m in methods if m.content]
    o.append("    /// Whether a content header and body frames follow this method: true for")
    o.append("    /// " + ", ".join(f"`{m.full}`" for m in content) + ".")
    o.append("    pub fn has_content(&self) -> bool {")
    o.append("        matches!(")
    o.append("            self,")
    o.append("            " + " | ".join(f"Method::{m.rust}(_)" for m in content))
    o.append("        )")
    o.append("    }")
    o.append("")
    o.append(SYNC_DOC)
    o.append("    pub fn is_synchronous_request(&self) -> bool {")
    o.append("        match self {")
    plain = [m for m in methods if m.responses and not m.has_field("no_wait")]
    nowait = [m for m in methods if m.responses and m.has_field("no_wait")]
    for m in nowait:
        o.append(f"            Method::{m.rust}(m) => !m.no_wait,")
    o.append("            " + " | ".join(f"Method::{m.rust}(_)" for m in plain) + " => true,")
    o.append("            _ => false,")
    o.append("        }")
    o.append("    }")
    o.append("}")
    o.append("")

    # Tests.
    o.append(TESTS_HEAD)
    o.append("    /// Every method, with every field set to a value other than its default.")
    o.append("    fn samples() -> Vec<Method> {")
    o.append("        vec![")
    for m in methods:
        o.append(f"            {sample_expr(m)}.into(),")
    o.append("        ]")
    o.append("    }")
    o.append("")
    for m in methods:
        o.append("    #[test]")
        o.append(f"    fn round_trip_{snake(m)}() {{")
        o.append(f"        round_trip({sample_expr(m)}.into(), {m.cls_id}, {m.index}, \"{m.full}\");")
        o.append("    }")
        o.append("")
    # Single-bit tests.
    o.append("    /// Setting one bit field alone changes exactly one bit of the encoding: bit")
    o.append("    /// `i` of the octet its run of bits packs into, the first bit of a run in the")
    o.append("    /// least significant position.")
    o.append("    #[test]")
    o.append("    fn each_bit_field_packs_into_its_own_bit() {")
    for m in methods:
        for kind, item in bit_groups(m.fields):
            if kind != "bits":
                continue
            for i, f in enumerate(item):
                if f.reserved:
                    continue
                rest = ", ..Default::default()" if len(m.public_fields) > 1 else ""
                o.append(f"        check_single_bit({m.rust}::default().into(), {m.rust} {{ {f.name}: true{rest} }}.into(), {i});")
    o.append("    }")
    o.append("")
    o.append(f"    const METHOD_COUNT: usize = {len(methods)};")
    o.append(TESTS_TAIL)
    return "\n".join(o) + "\n"


HEADER = r'''// @generated by scripts/gen_methods.py from the AMQP 0-9-1 spec XML (RabbitMQ's
// extended edition). Do not edit by hand: change the generator, then run
//     python3 scripts/gen_methods.py > src/codec/method.rs
//     rustfmt --edition 2021 src/codec/method.rs

//! Every method of AMQP 0-9-1 with RabbitMQ's extensions, in both directions.
//!
//! Each method is a struct named after its class and method (`queue.declare`
//! is [`QueueDeclare`]) with the spec's fields in snake case, and
//! [`Method`] is the enum of all of them. A few names differ from the spec:
//! `type` is `kind`, `nowait` is `no_wait`, and the reserved fields
//! (`reserved-1`, `reserved-2`: the old ticket, capabilities, insist,
//! known-hosts, out-of-band, channel-id and cluster-id) are left out, written
//! as zero or empty and skipped when read.
//!
//! Decoding works on the payload of one method frame and never copies:
//! short strings, long strings and tables refer to the frame's bytes.
//! Consecutive `bit` fields share one octet, the first in the least
//! significant bit (spec section 4.2.5.2). Bytes after the last field are
//! ignored, as RabbitMQ's own clients do.
//!
//! ```
//! use bytes::BytesMut;
//! use puka::codec::method::{Method, QueueDeclare};
//!
//! let declare = QueueDeclare {
//!     queue: "tasks".into(),
//!     durable: true,
//!     ..Default::default()
//! };
//! let mut buf = BytesMut::new();
//! Method::from(declare.clone()).encode(&mut buf)?;
//! assert_eq!(&buf[..4], &[0, 50, 0, 10]); // class 50 (queue), method 10 (declare)
//!
//! let decoded = Method::decode(buf.freeze())?;
//! assert_eq!(decoded.name(), "queue.declare");
//! assert_eq!(decoded, Method::QueueDeclare(declare));
//! # Ok::<(), puka::codec::CodecError>(())
//! ```

use super::table::FieldTable;
use super::wire::{put_longstr, put_shortstr, Reader, ShortString};
use super::CodecError;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Stands in for a credential in `Debug` output.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

/// Skips a reserved `shortstr` without checking that it is UTF-8.
fn skip_shortstr(r: &mut Reader<'_>, what: &'static str) -> Result<(), CodecError> {
    let len = r.u8(what)?;
    r.skip(usize::from(len), what)
}

/// Skips a reserved `longstr`.
fn skip_longstr(r: &mut Reader<'_>, what: &'static str) -> Result<(), CodecError> {
    let len = r.u32(what)?;
    r.skip(len as usize, what)
}
'''

READ_DOC = '''    /// Reads a method (class id, method id, then the arguments) from `r`,
    /// which a caller has bounded to one method frame's payload: what
    /// [`Method::decode`] does, without taking a handle on the payload.
    ///
    /// # Errors
    /// As [`Method::decode`].'''

DECODE_DOC = '''    /// Decodes a method frame's payload: class id, method id, then the arguments.
    ///
    /// Short strings, long strings and tables in the result are slices of
    /// `payload`, not copies. Bytes after the last argument are ignored.
    ///
    /// # Errors
    /// [`CodecError::UnknownMethod`] for ids this protocol does not define,
    /// [`CodecError::Truncated`] when the payload ends early, and the errors of
    /// [`ShortString`] and [`FieldTable`] decoding (invalid UTF-8, bad tables).'''

ENCODE_DOC = '''    /// Encodes class id, method id and arguments: the payload of a method
    /// frame, without the frame header or frame end.
    ///
    /// # Errors
    /// [`CodecError::ShortStringTooLong`], [`CodecError::LongValueTooLong`] and the
    /// errors of [`FieldTable::encode`]. On error `dst` is left as it was.'''

SYNC_DOC = '''    /// Whether the sender of this method waits for a reply: true for a request
    /// the spec pairs with a response (`queue.declare` and `queue.declare-ok`,
    /// `basic.get` and `basic.get-ok` or `basic.get-empty`, the closes, ...),
    /// unless its `no_wait` field is set.'''

TESTS_HEAD = r'''#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FieldValue;

    fn sample_table() -> FieldTable {
        let mut t = FieldTable::new();
        t.insert("x-message-ttl", FieldValue::from(60_000i32));
        t.insert("x-queue-type", FieldValue::from("quorum"));
        t
    }

    fn encode(m: &Method) -> BytesMut {
        let mut dst = BytesMut::new();
        m.encode(&mut dst).unwrap();
        dst
    }

    fn round_trip(m: Method, class_id: u16, method_id: u16, name: &str) {
        assert_eq!(m.class_id(), class_id);
        assert_eq!(m.method_id(), method_id);
        assert_eq!(m.name(), name);
        let bytes = encode(&m);
        let [c0, c1] = class_id.to_be_bytes();
        let [m0, m1] = method_id.to_be_bytes();
        assert_eq!(&bytes[..4], &[c0, c1, m0, m1]);
        let back = Method::decode(bytes.freeze()).unwrap();
        assert_eq!(back, m);
    }

    fn check_single_bit(none: Method, one: Method, bit: u32) {
        let a = encode(&none);
        let b = encode(&one);
        assert_eq!(a.len(), b.len(), "{}", one.name());
        let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(diffs.len(), 1, "{}", one.name());
        assert_eq!(a[diffs[0]] ^ b[diffs[0]], 1u8 << bit, "{}", one.name());
        assert_eq!(Method::decode(b.freeze()).unwrap(), one);
    }
'''

TESTS_TAIL = r'''
    #[test]
    fn samples_cover_every_method_once() {
        let samples = samples();
        assert_eq!(samples.len(), METHOD_COUNT);
        let mut ids: Vec<(u16, u16)> = samples.iter().map(|m| (m.class_id(), m.method_id())).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), METHOD_COUNT);
        let mut names: Vec<&str> = samples.iter().map(Method::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METHOD_COUNT);
    }

    #[test]
    fn every_strict_prefix_of_every_method_is_an_error() {
        for m in samples() {
            let bytes = encode(&m).freeze();
            for len in 0..bytes.len() {
                assert!(Method::decode(bytes.slice(..len)).is_err(), "{} cut to {len}", m.name());
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        for m in samples() {
            let mut bytes = encode(&m);
            bytes.extend_from_slice(b"\x00\xffjunk");
            assert_eq!(Method::decode(bytes.freeze()).unwrap(), m);
        }
    }

    #[test]
    fn has_content_only_for_publish_return_deliver_get_ok() {
        let with: Vec<&str> = samples().iter().filter(|m| m.has_content()).map(Method::name).collect();
        assert_eq!(with, ["basic.publish", "basic.return", "basic.deliver", "basic.get-ok"]);
    }

    #[test]
    fn synchronous_requests() {
        assert!(Method::from(QueueDeclare::default()).is_synchronous_request());
        assert!(!Method::from(QueueDeclare { no_wait: true, ..Default::default() }).is_synchronous_request());
        assert!(Method::from(BasicGet::default()).is_synchronous_request());
        assert!(Method::from(BasicRecover::default()).is_synchronous_request());
        assert!(Method::from(QueueUnbind::default()).is_synchronous_request());
        assert!(Method::from(ConnectionUpdateSecret::default()).is_synchronous_request());
        assert!(Method::from(ChannelClose::default()).is_synchronous_request());
        assert!(Method::from(ConfirmSelect::default()).is_synchronous_request());
        assert!(!Method::from(ConfirmSelect { no_wait: true }).is_synchronous_request());
        assert!(!Method::from(QueueDeclareOk::default()).is_synchronous_request());
        assert!(!Method::from(BasicPublish::default()).is_synchronous_request());
        assert!(!Method::from(BasicAck::default()).is_synchronous_request());
        assert!(!Method::from(BasicRecoverAsync::default()).is_synchronous_request());
        assert!(!Method::from(ChannelFlowOk::default()).is_synchronous_request());
        assert!(!Method::from(ConnectionBlocked::default()).is_synchronous_request());
    }

    // Byte-exact vectors, derived by hand from the spec.

    fn check_vector(m: Method, expected: &[u8]) {
        assert_eq!(&encode(&m)[..], expected, "{}", m.name());
        assert_eq!(Method::decode(Bytes::copy_from_slice(expected)).unwrap(), m);
    }

    #[test]
    fn vector_basic_publish() {
        let m = BasicPublish {
            exchange: ShortString::from(""),
            routing_key: ShortString::from("q"),
            mandatory: true,
            immediate: false,
        };
        #[rustfmt::skip]
        let expected = [
            0x00, 0x3c,       // class 60 (basic)
            0x00, 0x28,       // method 40 (publish)
            0x00, 0x00,       // reserved-1 (ticket), short 0
            0x00,             // exchange: shortstr of length 0
            0x01, b'q',       // routing key: length 1, "q"
            0x01,             // bits: mandatory = bit 0 set, immediate = bit 1 clear
        ];
        check_vector(m.into(), &expected);
    }

    #[test]
    fn vector_queue_declare_packs_bits() {
        let m = QueueDeclare {
            queue: ShortString::from("q"),
            durable: true,
            no_wait: false,
            ..Default::default()
        };
        #[rustfmt::skip]
        let expected = [
            0x00, 0x32,             // class 50 (queue)
            0x00, 0x0a,             // method 10 (declare)
            0x00, 0x00,             // reserved-1 (ticket)
            0x01, b'q',             // queue: length 1, "q"
            0b0000_0010,            // bits: passive=0, durable=1 (bit 1), exclusive=0,
                                    //       auto-delete=0, no-wait=0
            0x00, 0x00, 0x00, 0x00, // arguments: empty table (u32 byte length 0)
        ];
        check_vector(m.into(), &expected);
    }

    #[test]
    fn vector_connection_tune() {
        let m = ConnectionTune { channel_max: 2047, frame_max: 131_072, heartbeat: 60 };
        #[rustfmt::skip]
        let expected = [
            0x00, 0x0a,             // class 10 (connection)
            0x00, 0x1e,             // method 30 (tune)
            0x07, 0xff,             // channel-max 2047
            0x00, 0x02, 0x00, 0x00, // frame-max 131072 = 0x0002_0000
            0x00, 0x3c,             // heartbeat 60
        ];
        check_vector(m.into(), &expected);
    }

    #[test]
    fn vector_basic_ack() {
        let m = BasicAck { delivery_tag: 5, multiple: true };
        #[rustfmt::skip]
        let expected = [
            0x00, 0x3c,                                     // class 60 (basic)
            0x00, 0x50,                                     // method 80 (ack)
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // delivery-tag 5 (longlong)
            0x01,                                           // bits: multiple = bit 0
        ];
        check_vector(m.into(), &expected);
    }

    #[test]
    fn vector_exchange_declare_five_bits_in_one_octet() {
        let base = ExchangeDeclare {
            exchange: ShortString::from("x"),
            kind: ShortString::from("direct"),
            ..Default::default()
        };
        #[rustfmt::skip]
        let prefix: &[u8] = &[
            0x00, 0x28,             // class 40 (exchange)
            0x00, 0x0a,             // method 10 (declare)
            0x00, 0x00,             // reserved-1 (ticket)
            0x01, b'x',             // exchange: length 1, "x"
            0x06, b'd', b'i', b'r', b'e', b'c', b't', // type: length 6, "direct"
        ];
        let empty_table: &[u8] = &[0x00, 0x00, 0x00, 0x00];
        let cases = [
            // (passive, durable, auto_delete, internal, no_wait) -> octet
            ((true, false, false, false, false), 0b0000_0001),
            ((false, true, false, false, false), 0b0000_0010),
            ((false, false, true, false, false), 0b0000_0100),
            ((false, false, false, true, false), 0b0000_1000),
            ((false, false, false, false, true), 0b0001_0000),
            ((true, true, true, true, true), 0b0001_1111),
            ((false, false, false, false, false), 0b0000_0000),
        ];
        for ((passive, durable, auto_delete, internal, no_wait), octet) in cases {
            let m = ExchangeDeclare { passive, durable, auto_delete, internal, no_wait, ..base.clone() };
            let mut expected = prefix.to_vec();
            expected.push(octet);
            expected.extend_from_slice(empty_table);
            check_vector(m.into(), &expected);
        }
    }

    #[test]
    fn vector_reserved_fields_are_written_empty_and_skipped() {
        #[rustfmt::skip]
        let open = [
            0x00, 0x0a, 0x00, 0x28, // connection.open
            0x01, b'/',             // virtual-host "/"
            0x00,                   // reserved-1 (capabilities): empty shortstr
            0x00,                   // reserved-2 (insist): bit octet 0
        ];
        check_vector(ConnectionOpen { virtual_host: ShortString::from("/") }.into(), &open);
        #[rustfmt::skip]
        let open_ok = [
            0x00, 0x14, 0x00, 0x0b, // channel.open-ok
            0x00, 0x00, 0x00, 0x00, // reserved-1 (channel-id): empty longstr
        ];
        check_vector(ChannelOpenOk.into(), &open_ok);
        // Whatever a peer puts in reserved fields is accepted and dropped.
        #[rustfmt::skip]
        let odd_open = [
            0x00, 0x0a, 0x00, 0x28, 0x01, b'/',
            0x02, 0xff, 0xfe,       // reserved-1: two bytes, not even UTF-8
            0x01,                   // reserved-2: insist set
        ];
        assert_eq!(
            Method::decode(Bytes::copy_from_slice(&odd_open)).unwrap(),
            ConnectionOpen { virtual_host: ShortString::from("/") }.into()
        );
        #[rustfmt::skip]
        let get_empty = [
            0x00, 0x3c, 0x00, 0x48, // basic.get-empty
            0x03, b'a', b'b', b'c', // reserved-1 (cluster-id)
        ];
        assert_eq!(Method::decode(Bytes::copy_from_slice(&get_empty)).unwrap(), BasicGetEmpty.into());
    }

    // Rejection.

    #[test]
    fn unknown_class_is_rejected() {
        let err = Method::decode(Bytes::from_static(&[0x00, 0x0b, 0x00, 0x0a])).unwrap_err();
        assert_eq!(err, CodecError::UnknownMethod { class_id: 11, method_id: 10 });
        let err = Method::decode(Bytes::from_static(&[0xff, 0xff, 0x00, 0x0a, 1, 2, 3])).unwrap_err();
        assert_eq!(err, CodecError::UnknownMethod { class_id: 0xffff, method_id: 10 });
    }

    #[test]
    fn unknown_method_in_known_class_is_rejected() {
        let err = Method::decode(Bytes::from_static(&[0x00, 0x3c, 0x00, 0x29])).unwrap_err();
        assert_eq!(err, CodecError::UnknownMethod { class_id: 60, method_id: 41 });
        // exchange.unbind-ok is 51, not 41.
        let err = Method::decode(Bytes::from_static(&[0x00, 0x28, 0x00, 0x29])).unwrap_err();
        assert_eq!(err, CodecError::UnknownMethod { class_id: 40, method_id: 41 });
        assert_eq!(err.reply_code(), crate::codec::reply_code::COMMAND_INVALID);
    }

    #[test]
    fn truncated_queue_declare_is_rejected_at_every_length() {
        let m: Method = QueueDeclare {
            queue: ShortString::from("orders"),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: true,
            no_wait: false,
            arguments: sample_table(),
        }
        .into();
        let bytes = encode(&m).freeze();
        for len in 0..bytes.len() {
            let err = Method::decode(bytes.slice(..len)).unwrap_err();
            assert_eq!(err.reply_code(), crate::codec::reply_code::SYNTAX_ERROR, "cut to {len}: {err}");
        }
        assert_eq!(Method::decode(bytes).unwrap(), m);
    }

    #[test]
    fn invalid_utf8_short_string_is_rejected() {
        #[rustfmt::skip]
        let bad = [
            0x00, 0x3c, 0x00, 0x15, // basic.consume-ok
            0x02, 0xc3, 0x28,       // consumer-tag: invalid UTF-8
        ];
        let err = Method::decode(Bytes::copy_from_slice(&bad)).unwrap_err();
        assert!(matches!(err, CodecError::InvalidUtf8(_)), "{err:?}");
    }

    #[test]
    fn reply_texts_cut_mid_character_decode_lossily() {
        // RabbitMQ cuts reply texts at 255 bytes, here inside a "ü".
        let text = format!("NOT_FOUND - no queue '{}'", "ü".repeat(127));
        let cut = &text.as_bytes()[..255];
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&[0x00, 0x14, 0x00, 0x28, 0x01, 0x94, 0xff]); // channel.close 404
        payload.extend_from_slice(cut);
        payload.extend_from_slice(&[0x00, 0x3c, 0x00, 0x28]); // basic.publish
        let m = Method::decode(payload.clone().freeze()).unwrap();
        let Method::ChannelClose(c) = &m else { panic!("{m:?}") };
        assert_eq!(c.reply_code, 404);
        assert_eq!(c.reply_text.as_bytes(), &cut[..254]);
        assert_eq!((c.class_id, c.method_id), (60, 40));
        // connection.close, basic.return and connection.blocked alike.
        payload[..4].copy_from_slice(&[0x00, 0x0a, 0x00, 0x32]);
        let m = Method::decode(payload.clone().freeze());
        assert!(matches!(m, Ok(Method::ConnectionClose(_))), "{m:?}");
        payload[..4].copy_from_slice(&[0x00, 0x3c, 0x00, 0x32]);
        payload.truncate(payload.len() - 4);
        payload.extend_from_slice(&[0x01, b'x', 0x00]); // exchange "x", routing key ""
        let m = Method::decode(payload.freeze());
        assert!(matches!(m, Ok(Method::BasicReturn(_))), "{m:?}");
        let mut blocked = BytesMut::from(&[0x00, 0x0a, 0x00, 0x3c, 0x03, b'm', 0xc3, b'!'][..]);
        let m = Method::decode(blocked.split().freeze()).unwrap();
        assert_eq!(m, Method::ConnectionBlocked(ConnectionBlocked { reason: "m\u{fffd}!".into() }));
        // Names stay strict: the same bytes as a consumer tag are refused.
        let mut cancel = BytesMut::from(&[0x00, 0x3c, 0x00, 0x1f, 0xff][..]);
        cancel.extend_from_slice(cut);
        let err = Method::decode(cancel.freeze()).unwrap_err();
        assert!(matches!(err, CodecError::InvalidUtf8(_)), "{err:?}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small xorshift generator: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ids: Vec<(u16, u16)> = samples().iter().map(|m| (m.class_id(), m.method_id())).collect();
        for &(class_id, method_id) in &ids {
            for len in 0..48 {
                for _ in 0..8 {
                    let mut payload = BytesMut::new();
                    payload.put_u16(class_id);
                    payload.put_u16(method_id);
                    for _ in 0..len {
                        // Mostly small bytes, so lengths often fit and decoding goes deep.
                        let v = next();
                        payload.put_u8(if v % 4 == 0 { v as u8 } else { (v % 8) as u8 });
                    }
                    let _ = Method::decode(payload.freeze());
                }
            }
        }
    }

    #[test]
    fn basic_deliver_decodes_without_copying() {
        let m: Method = BasicDeliver {
            consumer_tag: ShortString::from("ctag-1"),
            delivery_tag: 42,
            redelivered: true,
            exchange: ShortString::from("amq.direct"),
            routing_key: ShortString::from("jobs.with.a.routing.key.longer.than.inline"),
        }
        .into();
        let payload = encode(&m).freeze();
        let range = payload.as_ptr_range();
        let decoded = Method::decode(payload.clone()).unwrap();
        assert_eq!(decoded, m);
        let Method::BasicDeliver(d) = decoded else { panic!("not a deliver") };
        // Short strings are stored inline (no reference counting); longer
        // ones are slices of the payload.
        assert!(range.contains(&d.routing_key.as_bytes().as_ptr()), "long key was copied");
        assert!(!range.contains(&d.consumer_tag.as_bytes().as_ptr()), "short tag is inline");
    }

    #[test]
    fn encode_error_leaves_dst_unchanged() {
        let long = "k".repeat(256);
        let m: Method = BasicPublish { routing_key: ShortString::from(long.as_str()), ..Default::default() }.into();
        let mut dst = BytesMut::from(&b"head"[..]);
        assert_eq!(m.encode(&mut dst), Err(CodecError::ShortStringTooLong(256)));
        assert_eq!(&dst[..], b"head");
    }

    #[test]
    fn debug_hides_credentials() {
        let start_ok = ConnectionStartOk {
            mechanism: ShortString::from("PLAIN"),
            response: Bytes::from_static(b"\0guest\0hunter2"),
            ..Default::default()
        };
        let secure_ok = ConnectionSecureOk { response: Bytes::from_static(b"hunter2") };
        let update = ConnectionUpdateSecret {
            new_secret: Bytes::from_static(b"hunter2"),
            reason: ShortString::from("token refresh"),
        };
        for m in [Method::from(start_ok), secure_ok.into(), update.into()] {
            let shown = format!("{m:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("bytes redacted"), "{shown}");
        }
        // The other fields still show.
        let shown = format!("{:?}", ConnectionStartOk { mechanism: ShortString::from("PLAIN"), ..Default::default() });
        assert!(shown.contains("mechanism: \"PLAIN\""), "{shown}");
    }

    #[test]
    fn from_builds_the_matching_variant() {
        assert_eq!(Method::from(TxSelectOk), Method::TxSelectOk(TxSelectOk));
        assert_eq!(Method::from(ConfirmSelectOk).name(), "confirm.select-ok");
        assert_eq!((BasicNack::CLASS_ID, BasicNack::METHOD_ID), (60, 120));
        assert_eq!((ConnectionUpdateSecret::CLASS_ID, ConnectionUpdateSecret::METHOD_ID), (10, 70));
        assert_eq!((ExchangeUnbindOk::CLASS_ID, ExchangeUnbindOk::METHOD_ID), (40, 51));
        assert_eq!((ConfirmSelect::CLASS_ID, ConfirmSelect::METHOD_ID), (85, 10));
    }
}'''


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC
    sys.stdout.write(generate(load(path)))


if __name__ == "__main__":
    main()
