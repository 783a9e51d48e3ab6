"""scripts/local_triggers.py: every event source of infra/template.yaml is driven, with the
template's own settings; a batch fails, retries, bisects and dead-letters as Lambda's does; a shard's
order is kept. Needs no running stack (the stream, the function and the queue are stand-ins here).

Usage: .tools/venv/bin/python scripts/local_triggers_test.py
"""

import contextlib
import copy
import io
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402
import local_triggers as lt  # noqa: E402

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "infra", "template.yaml")


def record(sequence: int, created: float = 1000.0) -> dict:
    return {
        "eventID": f"e{sequence}",
        "eventName": "MODIFY",
        "dynamodb": {"SequenceNumber": f"{sequence:021d}", "ApproximateCreationDateTime": created},
    }


def stream_source(**settings) -> lt.StreamSource:
    base = dict(
        function="platform-sync",
        event="TableStream",
        table="Table",
        batch_size=25,
        window_seconds=1,
        bisect=True,
        max_retries=5,
        max_age_seconds=86400,
        report_failures=True,
        starting_position="TRIM_HORIZON",
        on_failure="SyncDeadLetterQueue",
    )
    base.update(settings)
    return lt.StreamSource(**base)


class Recorder:
    """A function stand-in: records each batch it is handed, and fails on the poison records."""

    def __init__(self, poison=(), report=False):
        self.batches, self.poison, self.report, self.records = [], set(poison), report, []

    def __call__(self, payload):
        self.records.extend(payload["Records"])
        sequence = [r["dynamodb"]["SequenceNumber"] for r in payload["Records"]]
        self.batches.append(sequence)
        bad = [s for s in sequence if s in self.poison]
        if bad and self.report:
            return {"batchItemFailures": [{"itemIdentifier": s} for s in bad]}
        if bad:
            raise lt.InvokeError("poison")
        return {"batchItemFailures": []}


class TheTemplate(unittest.TestCase):
    def setUp(self):
        self.template = cfn_template.load_long_form(TEMPLATE)

    def test_every_event_source_of_the_template_is_driven_with_its_own_settings(self):
        found = lt.sources(self.template)
        declared = [
            (resource["Metadata"]["BuildProperties"]["Binary"], event)
            for resource in self.template["Resources"].values()
            if resource.get("Type") == "AWS::Serverless::Function"
            for event, spec in (resource["Properties"].get("Events") or {}).items()
            if spec["Type"] not in lt.HTTP_EVENTS
        ]
        declared += [
            ("rule", name) for name, resource in self.template["Resources"].items() if resource.get("Type") == "AWS::Events::Rule"
        ]
        self.assertEqual(
            sorted((s.function, s.event) if not isinstance(s, lt.RuleSource) else ("rule", s.rule) for s in found),
            sorted(declared),
        )
        rule = next(s for s in found if isinstance(s, lt.RuleSource))
        self.assertEqual((rule.rule, rule.bus, rule.pattern), ("LifecycleEventsToLog", "default", {"source": ["addon-provider"]}))
        self.assertEqual(rule.targets, [("lifecycle-events-log", "logs", "LifecycleEventsLog", "/aws/events/local/lifecycle")])
        stream = next(s for s in found if isinstance(s, lt.StreamSource))
        self.assertEqual(
            (stream.batch_size, stream.window_seconds, stream.bisect, stream.max_retries, stream.max_age_seconds),
            (25, 1.0, True, 5, 86400),
        )
        self.assertTrue(stream.report_failures)
        self.assertEqual((stream.table, stream.on_failure, stream.starting_position), ("Table", "SyncDeadLetterQueue", "TRIM_HORIZON"))
        marketplace = next(s for s in found if isinstance(s, lt.FunctionRuleSource))
        self.assertEqual(
            (marketplace.function, marketplace.bus, marketplace.pattern["source"], marketplace.max_retries,
             marketplace.max_age_seconds, marketplace.dead_letter),
            ("marketplace-events", "default", ["aws.agreement-marketplace"], 185, 86400, "MarketplaceEventsDeadLetterQueue"),
        )
        self.assertIn("License Updated - Manufacturer", marketplace.pattern["detail-type"])
        schedules = {s.function: s for s in found if isinstance(s, lt.ScheduleSource)}
        self.assertEqual((schedules["platform-sync"].seconds, schedules["platform-sync"].input), (300, {"sweep": "scheduled"}))
        # The meter gets the scheduled-event document, whose `time` is its clock.
        self.assertEqual((schedules["metering"].seconds, schedules["metering"].input), (300, None))

    def test_the_schedule_follows_its_parameter_and_condition(self):
        def sweep(found):
            return next(s for s in found if isinstance(s, lt.ScheduleSource) and s.function == "platform-sync")

        self.assertEqual(sweep(lt.sources(self.template, {"SyncSweepMinutes": 1})).seconds, 60)
        self.assertEqual(sweep(lt.sources(self.template, {"SyncSweepMinutes": 60})).seconds, 3600)

    def test_a_source_that_is_not_driven_stops_the_runner(self):
        for kind, properties in [
            ("SQS", {"Queue": {"Fn::GetAtt": ["SyncDeadLetterQueue", "Arn"]}}),
            ("EventBridgeRule", {"Pattern": {"source": ["x"]}, "DeadLetterConfig": {"Arn": "arn:aws:sqs:elsewhere"}}),
            ("ScheduleV2", {"ScheduleExpression": "cron(0 * * * ? *)"}),
        ]:
            broken = copy.deepcopy(self.template)
            function = next(r for r in broken["Resources"].values() if r.get("Type") == "AWS::Serverless::Function")
            function["Properties"].setdefault("Events", {})["Extra"] = {"Type": kind, "Properties": properties}
            with self.assertRaises(lt.Unsupported, msg=kind):
                lt.sources(broken)
        # A rule that targets a function is for the driver to deliver: not yet.
        broken = copy.deepcopy(self.template)
        broken["Resources"]["LifecycleEventsToLog"]["Properties"]["Targets"].append(
            {"Id": "fn", "Arn": {"Fn::GetAtt": ["PlatformSyncFunction", "Arn"]}}
        )
        with self.assertRaises(lt.Unsupported):
            lt.sources(broken)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            self.assertEqual(lt.main(["plan", TEMPLATE], {}), 0)
        self.assertIn('"TableStream"', printed.getvalue())

    def test_a_rule_event_that_fails_is_retried_then_dead_lettered_and_one_that_succeeds_is_gone(self):
        source = lt.FunctionRuleSource(function="f", event="E", bus="default", pattern={}, max_retries=2,
                                       max_age_seconds=86400, dead_letter="Dlq")

        class Queues:
            def __init__(self):
                self.calls, self.sent, self.receives = [], [], 0

            def url(self, name):
                return name

            def send(self, url, body):
                self.sent.append((url, body))

            def call(self, operation, body):
                self.calls.append(operation)
                if operation == "ReceiveMessage":
                    self.receives += 1
                    event = {"id": "e1", "detail-type": "X", "time": "2099-01-01T00:00:00Z"}
                    return {"Messages": [{"Body": json.dumps(event), "ReceiptHandle": "h",
                                          "Attributes": {"ApproximateReceiveCount": str(self.receives)}}]}
                return {}

        def failing(event):
            raise lt.InvokeError("down")

        queues = Queues()
        for _ in range(2):
            lt.relay_once(source, queues, failing, log=lambda _: None)
        self.assertEqual(queues.calls.count("ChangeMessageVisibility"), 2)
        self.assertEqual(queues.sent, [])
        lt.relay_once(source, queues, failing, log=lambda _: None)
        self.assertEqual([url for url, _ in queues.sent], ["dlq"])
        self.assertEqual(queues.calls[-1], "DeleteMessage")
        handed = []
        fresh = Queues()
        self.assertEqual(lt.relay_once(source, fresh, handed.append, log=lambda _: None), 1)
        self.assertEqual([event["id"] for event in handed], ["e1"])
        self.assertEqual(fresh.calls, ["ReceiveMessage", "DeleteMessage"])

    def test_rates(self):
        self.assertEqual(lt.rate_seconds("rate(1 minute)"), 60)
        self.assertEqual(lt.rate_seconds("rate(2 hours)"), 7200)
        self.assertEqual(lt.rate_seconds("rate(1 day)"), 86400)
        for bad in ["rate(0 minutes)", "rate(five minutes)", "at(2026-01-01T00:00:00)", "cron(0 12 * * ? *)"]:
            with self.assertRaises(lt.Unsupported, msg=bad):
                lt.rate_seconds(bad)


class Delivery(unittest.TestCase):
    def deliver(self, records, function, clock=lambda: 1000.0, **settings):
        letters = []
        delivery = lt.BatchDelivery(
            stream_source(**settings),
            function,
            lambda records, condition, invocations: letters.append(
                ([r["dynamodb"]["SequenceNumber"] for r in records], condition, invocations)
            ),
            clock=clock,
            sleep=lambda _: None,
        )
        return delivery.deliver(records), letters

    def test_a_batch_that_succeeds_is_delivered_once(self):
        function = Recorder()
        invocations, letters = self.deliver([record(i) for i in range(3)], function)
        self.assertEqual((invocations, letters, len(function.batches)), (1, [], 1))

    def test_a_poison_record_is_bisected_down_retried_and_dead_lettered_alone(self):
        records = [record(i) for i in range(4)]
        poison = records[2]["dynamodb"]["SequenceNumber"]
        function = Recorder(poison=[poison])
        invocations, letters = self.deliver(records, function)
        self.assertEqual(letters, [([poison], "RetryAttemptsExhausted", 6)])
        delivered = {s for batch in function.batches for s in batch if s != poison}
        self.assertEqual(delivered, {r["dynamodb"]["SequenceNumber"] for r in records} - {poison})
        # Order within the shard: no record after the poison was handed over before the ones before it.
        first_after = next(i for i, batch in enumerate(function.batches) if records[3]["dynamodb"]["SequenceNumber"] in batch)
        first_before = next(i for i, batch in enumerate(function.batches) if records[1]["dynamodb"]["SequenceNumber"] in batch)
        self.assertLessEqual(first_before, first_after)
        self.assertEqual(invocations, len(function.batches))

    def test_without_bisect_the_whole_rest_is_retried_then_dead_lettered(self):
        records = [record(i) for i in range(3)]
        function = Recorder(poison=[records[1]["dynamodb"]["SequenceNumber"]], report=True)
        invocations, letters = self.deliver(records, function, bisect=False, max_retries=2)
        self.assertEqual(invocations, 3)
        # Reported failures: the retry starts at the lowest failed record.
        self.assertEqual(function.batches[1], [records[1]["dynamodb"]["SequenceNumber"], records[2]["dynamodb"]["SequenceNumber"]])
        self.assertEqual(letters, [(function.batches[1], "RetryAttemptsExhausted", 3)])

    def test_records_older_than_the_maximum_age_are_dead_lettered_unsent(self):
        function = Recorder()
        invocations, letters = self.deliver([record(1, created=0.0)], function, clock=lambda: 100.0, max_age_seconds=60)
        self.assertEqual((invocations, function.batches), (0, []))
        self.assertEqual(letters[0][1], "RecordAgeExceeded")

    def test_failed_from_follows_lambdas_rules(self):
        records = [record(i) for i in range(3)]
        seq = [r["dynamodb"]["SequenceNumber"] for r in records]
        self.assertIsNone(lt.failed_from(records, {"batchItemFailures": []}))
        self.assertIsNone(lt.failed_from(records, None))
        self.assertEqual(lt.failed_from(records, {"batchItemFailures": [{"itemIdentifier": seq[2]}, {"itemIdentifier": seq[1]}]}), 1)
        self.assertEqual(lt.failed_from(records, {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}), 0)
        self.assertEqual(lt.failed_from(records, {"batchItemFailures": [{}]}), 0)

    def test_the_dead_letter_record_is_lambdas(self):
        records = [record(5, created=1000.0), record(9, created=1001.0)]
        letter = lt.dead_letter_record(stream_source(), "arn:stream", "shard-1", records, "RetryAttemptsExhausted", 6, "eu-west-1")
        info = letter["DDBStreamBatchInfo"]
        self.assertEqual((info["shardId"], info["batchSize"], info["streamArn"]), ("shard-1", 2, "arn:stream"))
        self.assertEqual((info["startSequenceNumber"], info["endSequenceNumber"]), (f"{5:021d}", f"{9:021d}"))
        self.assertEqual(letter["requestContext"]["condition"], "RetryAttemptsExhausted")
        self.assertEqual(letter["requestContext"]["approximateInvokeCount"], 6)
        self.assertTrue(letter["requestContext"]["functionArn"].endswith(":function:platform-sync"))


class Repair(unittest.TestCase):
    def test_an_empty_map_that_dynamodb_local_wrote_as_an_empty_object_is_a_map_again(self):
        given = {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "RESOURCE#r"}},
                "NewImage": {
                    "config": {},
                    "options": {"M": {"inner": {}, "kept": {"S": "x"}}},
                    "list": {"L": [{}, {"N": "1"}]},
                    "name": {"S": "n"},
                },
            },
        }
        image = lt.repaired(given)["dynamodb"]["NewImage"]
        self.assertEqual(image["config"], {"M": {}})
        self.assertEqual(image["options"], {"M": {"inner": {"M": {}}, "kept": {"S": "x"}}})
        self.assertEqual(image["list"], {"L": [{"M": {}}, {"N": "1"}]})
        self.assertEqual(image["name"], {"S": "n"})
        self.assertEqual(given["dynamodb"]["NewImage"]["config"], {}, "the record read is left as it was")


class FakeStream:
    """Shards of records, each read a page at a time."""

    arn = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x"

    def __init__(self, shards):
        self.data = shards  # [(shard id, parent, [records], closed)]
        self.positions = {}

    def shards(self):
        return [{"ShardId": shard, **({"ParentShardId": parent} if parent else {})} for shard, parent, _, _ in self.data]

    def iterator(self, shard, position, after=None):
        self.positions[shard] = 0
        return shard

    def records(self, iterator):
        _, _, records, closed = next(entry for entry in self.data if entry[0] == iterator)
        start = self.positions[iterator]
        page = records[start : start + 2]
        self.positions[iterator] = start + len(page)
        done = closed and self.positions[iterator] >= len(records)
        return page, None if done else iterator


class Polling(unittest.TestCase):
    def test_a_parent_shard_is_delivered_before_its_child_in_batches_of_the_size(self):
        parent = [record(i) for i in range(5)]
        child = [record(i) for i in range(5, 8)]
        stream = FakeStream([("child", "parent", child, False), ("parent", None, parent, True)])
        function = Recorder()
        now = [0.0]
        poller = lt.StreamPoller(
            stream_source(batch_size=3, window_seconds=10),
            stream,
            lambda shard: lt.BatchDelivery(
                stream_source(batch_size=3), function, lambda *_: None, clock=lambda: 1000.0, sleep=lambda _: None
            ),
            clock=lambda: now[0],
            log=lambda _: None,
        )
        for _ in range(10):
            poller.poll_once()
        now[0] = 20.0  # the batching window passes for the child's last records
        poller.poll_once()
        order = [s for batch in function.batches for s in batch]
        self.assertEqual(order, [r["dynamodb"]["SequenceNumber"] for r in parent + child])
        self.assertTrue(all(len(batch) <= 3 for batch in function.batches))
        self.assertTrue(all(r.get("eventSourceARN") == FakeStream.arn for r in function.records), "in Lambda's shape")


if __name__ == "__main__":
    unittest.main()
