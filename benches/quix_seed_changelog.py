#!/usr/bin/env python3
"""Seed a Quix Streams changelog topic directly, to benchmark Quix's state recovery.

Building a big state by running Quix is too slow (about 3k msg/s here), so this
script writes what Quix itself would have written after counting one message
for each of --keys message keys with ../shared/bench/quix_count_per_key.py:

* input topic T: per partition p, one "history" message (offset h_p, already
  counted in the seeded state) and one "new" message (offset h_p + 1, not yet
  processed); both carry the same seeded key, the first one that maps to p;
* changelog topic "changelog__<GROUP>--<T>--default" (the name Quix derives for
  the default store of a dataframe on the single topic T), created as Quix would
  create it: the input's partition count and replication factor,
  cleanup.policy=compact, retention.ms / retention.bytes copied from T;
* for each message key "user-<i>" (i < --keys), in changelog partition
  p = crc32(key) % partitions (librdkafka's default key partitioner, so other
  producers of these keys, e.g. produce_purchases.py, agree), two records exactly
  as Quix's RocksDB transaction produces them:
      key   b'"user-<i>"|"count"'   value b'1'
      key   b'"user-<i>"|"total"'   value b'<i % 100 + 1>'
      headers [("__column_family__", b"default"),
               ("__processed_tp_offsets__", b'{"<T>":<h_p>}')]
  (state key = JSON(message key) + b"|" + JSON(state key); values are JSON);
* the group's committed offset on T[p] = h_p + 1. Recovery applies a changelog
  record only if every processed offset in its header is below the committed
  offset of that topic-partition (h_p < h_p + 1), so every seeded record is
  applied; after recovery Quix resumes T[p] at h_p + 1 and processes exactly the
  `partitions` new messages, emitting count=2 and total=<seeded total + 1>.

Use fresh topic and group names every run: the script refuses a changelog topic
that already holds records. Needs confluent-kafka (the Quix venv has it).

Benchmark (one round; PY=~/.cache/kstreams-bench/venv-quix/bin/python):

    $PY benches/quix_seed_changelog.py --broker 127.0.0.1:9092 \\
        --group G --input T --partitions 2 --keys 500000
    rm -rf /tmp/quix-state-G        # recovery needs an empty state dir
    QUIXSTREAMS_STATE_LOG_LEVEL=INFO $PY ../shared/bench/quix_count_per_key.py \\
        --broker 127.0.0.1:9092 --group G --input T --output T-out \\
        --state-dir /tmp/quix-state-G --count 2      # --count = --partitions

What to time: the app runs with loglevel WARNING, but QUIXSTREAMS_STATE_LOG_LEVEL=INFO
makes the quixstreams.state loggers print at INFO to stderr (timestamps to the
millisecond). Recovery time = time of "Beginning recovery check..." to time of
"Recovery process complete! Resuming normal processing..." (one "Recovery
successful for <RecoveryPartition ...[p]>" line per partition in between).
Quix only notices the end of a partition on an empty 1 s poll, so this includes
about 1-2 s of fixed overhead: take a small --keys (e.g. 100) run as baseline.
Timing the whole process instead would include start-up and the group join
(on tansu, about half the 45 s session timeout). The run should end with
"quix: 2 messages ..." after the two new messages; the output topic holds, per
partition, {"key": "user-<i>", "count": 2, "total": <i % 100 + 2>}.
"""
import argparse
import json
import time
import zlib

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

STORE = "default"
CF_HEADER = "__column_family__"
PROCESSED_OFFSETS_HEADER = "__processed_tp_offsets__"


def jdump(obj) -> bytes:
    """JSON exactly as Quix's orjson writes it for these types (compact, UTF-8)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def changelog_topic_name(group: str, input_topic: str, store: str = STORE) -> str:
    return f"changelog__{group}--{input_topic}--{store}"


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def seeded_total(i: int) -> int:
    return i % 100 + 1


def state_key(message_key: str, name: str) -> bytes:
    return jdump(message_key) + b"|" + jdump(name)


def changelog_headers(input_topic: str, processed_offset: int) -> list:
    return [
        (CF_HEADER, STORE.encode()),
        (PROCESSED_OFFSETS_HEADER, jdump({input_topic: processed_offset})),
    ]


def ensure_topic(admin, name, partitions, config):
    """Create the topic if missing; return its partition count."""
    topics = admin.list_topics(timeout=30).topics
    if name not in topics:
        new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)
        for future in admin.create_topics([new]).values():
            future.result()
        return partitions
    return len(topics[name].partitions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--keys", type=int, default=500000)
    args = parser.parse_args()
    n_parts = args.partitions
    changelog = changelog_topic_name(args.group, args.input)

    # Topics. Quix derives the changelog config from the input topic's
    # DescribeConfigs (it needs retention.ms there) and, for an existing
    # changelog, checks only the partition count.
    admin = AdminClient({"bootstrap.servers": args.broker})
    input_config = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    if ensure_topic(admin, args.input, n_parts, input_config) != n_parts:
        raise SystemExit(f"{args.input} exists with a partition count other than {n_parts}")
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.input)
    described = {k: v.value for k, v in admin.describe_configs([resource])[resource].result().items()}
    if "retention.ms" not in described:
        raise SystemExit(f"{args.input} reports no retention.ms, which Quix requires")
    changelog_config = {
        "cleanup.policy": "compact",
        "retention.ms": described["retention.ms"],
        "retention.bytes": described.get("retention.bytes", "-1"),
    }
    if ensure_topic(admin, changelog, n_parts, changelog_config) != n_parts:
        raise SystemExit(f"{changelog} exists with a partition count other than {n_parts}")

    consumer = Consumer({"bootstrap.servers": args.broker, "group.id": args.group,
                         "enable.auto.commit": False})
    for p in range(n_parts):
        if consumer.get_watermark_offsets(TopicPartition(changelog, p), timeout=30)[1] > 0:
            raise SystemExit(f"{changelog} already holds records: use a fresh --group")

    # One seeded key per partition for the input messages.
    first_key = {}
    for i in range(args.keys):
        first_key.setdefault(partition_for(f"user-{i}", n_parts), i)
        if len(first_key) == n_parts:
            break
    else:
        raise SystemExit(f"--keys {args.keys} leaves some partition without a key")

    # Input: history message (offset h_p) and new message (h_p + 1) per partition.
    errors = []
    offsets = {}
    producer = Producer({"bootstrap.servers": args.broker, "enable.idempotence": True})

    def record_offset(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.setdefault(msg.partition(), []).append(msg.offset())

    for p, i in first_key.items():
        key = f"user-{i}".encode()
        for amount in (seeded_total(i), 1):
            producer.produce(args.input, key=key, value=jdump({"amount": amount}),
                             partition=p, on_delivery=record_offset)
        producer.flush(30)  # delivered one partition at a time: offsets in order
    if errors or any(len(v) != 2 or v[1] != v[0] + 1 for v in offsets.values()):
        raise SystemExit(f"input messages: errors {errors}, offsets {offsets}")
    history = {p: v[0] for p, v in offsets.items()}

    # Changelog: two records per message key, in the key's partition. Batched,
    # with delivery reports for failures only.
    producer = Producer({
        "bootstrap.servers": args.broker,
        "enable.idempotence": True,  # as Quix's producer
        "linger.ms": 50,
        "queue.buffering.max.messages": 1000000,
        "on_delivery": lambda err, msg: errors.append(err),
        "delivery.report.only.error": True,
    })
    headers = {p: changelog_headers(args.input, history[p]) for p in range(n_parts)}
    count_key, count_value = b"|" + jdump("count"), jdump(1)
    total_key, total_values = b"|" + jdump("total"), [jdump(seeded_total(i)) for i in range(100)]
    start = time.perf_counter()
    for i in range(args.keys):
        message_key = f"user-{i}"
        p = partition_for(message_key, n_parts)
        prefix = jdump(message_key)  # the same bytes as state_key(message_key, ...)
        for key, value in ((prefix + count_key, count_value), (prefix + total_key, total_values[i % 100])):
            while True:
                try:
                    producer.produce(changelog, key=key, value=value, partition=p, headers=headers[p])
                    break
                except BufferError:
                    producer.poll(0.1)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(300)
    elapsed = time.perf_counter() - start
    if left or errors:
        raise SystemExit(f"changelog: {left} undelivered, errors {errors[:5]}")

    # Commit h_p + 1: the history message and the seeded state count as processed.
    commit = [TopicPartition(args.input, p, history[p] + 1) for p in range(n_parts)]
    try:
        consumer.commit(offsets=commit, asynchronous=False)
        committed = consumer.committed(commit, timeout=30)
    except KafkaException as exc:
        raise SystemExit(f"commit for group {args.group} failed: {exc}")
    consumer.close()
    got = {tp.partition: tp.offset for tp in committed}
    if got != {tp.partition: tp.offset for tp in commit}:
        raise SystemExit(f"committed offsets read back as {got}")

    new = ", ".join(f"user-{i}@{args.input}[{p}]:{history[p] + 1}" for p, i in sorted(first_key.items()))
    print(f"seeded {2 * args.keys} records ({args.keys} keys) into {changelog} in {elapsed:.2f} s; "
          f"group {args.group} committed {got}; Quix will process {n_parts} new messages "
          f"(--count {n_parts}): {new}")


if __name__ == "__main__":
    main()
