"""Lambda's billing arithmetic and REPORT line, against cases worked out by hand (prices: Lambda's x86 defaults,
$0.20 per million requests and $0.0000166667 per GB-second; 1 GB = 1024 MB)."""

from decimal import Decimal

from django.test import SimpleTestCase, override_settings

from invocations import billing
from invocations.models import Invocation
from invocations.runtime.outcome import Outcome, report_line
from tests.base import BaseTestCase, handler_zip

PRICES = dict(PRICE_PER_REQUEST=Decimal("0.0000002"), PRICE_PER_GB_SECOND=Decimal("0.0000166667"))
REQUEST_ID = "8f5b2a7c-3d1e-4c2b-9a60-0f1e2d3c4b5a"


@override_settings(**PRICES, BILL_INIT_DURATION=True)
class BilledDurationTests(SimpleTestCase):
    def test_it_bills_a_whole_number_of_milliseconds_as_it_is(self):
        self.assertEqual(billing.billed_duration_ms(100.0), 100)
        self.assertEqual(billing.billed_duration_ms(900000.0), 900000)

    def test_it_rounds_a_hundredth_of_a_millisecond_up_to_one(self):
        self.assertEqual(billing.billed_duration_ms(0.01), 1)

    def test_it_rounds_any_fraction_up_to_the_next_millisecond(self):
        self.assertEqual(billing.billed_duration_ms(12.30001), 13)
        self.assertEqual(billing.billed_duration_ms(Decimal("12.30001")), 13)
        self.assertEqual(billing.billed_duration_ms(99.999), 100)

    def test_it_bills_at_least_one_millisecond(self):
        self.assertEqual(billing.billed_duration_ms(0), 1)

    def test_it_bills_nothing_for_an_invocation_that_never_ran(self):
        self.assertIsNone(billing.billed_duration_ms(None))
        self.assertIsNone(billing.billed_duration_ms(None, 120.0))

    def test_it_adds_the_init_duration_before_rounding_up_once(self):
        # Lambda's own example: Duration 1.52 ms + Init Duration 133.16 ms = 134.68 → Billed Duration 135 ms
        # (rounding each up first would give 2 + 134 = 136).
        self.assertEqual(billing.billed_duration_ms(1.52, 133.16), 135)
        self.assertEqual(billing.billed_duration_ms(100.5, 250.25), 351)
        self.assertEqual(billing.billed_duration_ms(2.0, 3.0), 5)

    @override_settings(BILL_INIT_DURATION=False)
    def test_it_leaves_the_init_duration_out_when_init_is_not_billed(self):
        self.assertEqual(billing.billed_duration_ms(1.52, 133.16), 2)
        self.assertEqual(billing.billed_duration_ms(12.30001, 500.0), 13)
        self.assertEqual(billing.billed_duration_ms(100.0, 250.25), 100)


@override_settings(**PRICES)
class CostTests(SimpleTestCase):
    def assertBill(self, memory_mb, billed_ms, gb_seconds, cost):
        gb_s = billing.gb_seconds(memory_mb, billed_ms)
        self.assertEqual(gb_s, Decimal(gb_seconds))
        self.assertEqual(billing.cost(gb_s), Decimal(cost))
        # The exact quantum too: 16 decimal places, as the cost column stores it.
        self.assertEqual(billing.cost(gb_s).as_tuple().exponent, -16)

    def test_it_bills_128_mb_for_100_ms(self):
        # 0.125 GB × 0.1 s = 0.0125 GB-s; 0.0125 × 0.0000166667 = 0.00000020833375; + 0.0000002
        self.assertBill(128, 100, "0.0125", "0.0000004083337500")

    def test_it_bills_1536_mb_for_1_ms(self):
        # 1.5 GB × 0.001 s = 0.0015 GB-s; 0.0015 × 0.0000166667 = 0.00000002500005; + 0.0000002
        self.assertBill(1536, 1, "0.0015", "0.0000002250000500")

    def test_it_bills_10240_mb_for_900000_ms(self):
        # 10 GB × 900 s = 9000 GB-s; 9000 × 0.0000166667 = 0.1500003; + 0.0000002
        self.assertBill(10240, 900000, "9000", "0.1500005000000000")

    def test_it_bills_an_odd_memory_size_exactly(self):
        # 130/1024 = 0.126953125 GB × 0.001 s; × 0.0000166667 = 0.0000000021158896484375;
        # + 0.0000002 = 0.0000002021158896|484375 → 0.0000002021158896
        self.assertBill(130, 1, "0.000126953125", "0.0000002021158896")

    def test_it_rounds_a_cost_half_way_between_to_the_even_digit(self):
        # 192/1024 = 0.1875 GB × 0.001 s = 0.0001875; × 0.0000166667 = 0.00000000312500625;
        # + 0.0000002 = 0.0000002031250062|5 → ...062 (half-even; half-up would give ...063)
        self.assertBill(192, 1, "0.0001875", "0.0000002031250062")

    def test_it_charges_only_the_request_when_nothing_ran(self):
        self.assertEqual(billing.gb_seconds(128, None), Decimal(0))
        self.assertEqual(billing.cost(billing.gb_seconds(128, None)), Decimal("0.0000002000000000"))


class ReportLineTests(SimpleTestCase):
    def test_it_writes_a_cold_starts_report_with_the_init_duration(self):
        self.assertEqual(
            report_line(REQUEST_ID, 1.52, 135, 128, 39, init_ms=133.16),
            f"REPORT RequestId: {REQUEST_ID}\tDuration: 1.52 ms\tBilled Duration: 135 ms\tMemory Size: 128 MB\t"
            f"Max Memory Used: 39 MB\tInit Duration: 133.16 ms\t",
        )

    def test_it_writes_a_warm_report_without_an_init_duration(self):
        self.assertEqual(
            report_line(REQUEST_ID, 12.30001, 13, 1536, 70),
            f"REPORT RequestId: {REQUEST_ID}\tDuration: 12.30 ms\tBilled Duration: 13 ms\tMemory Size: 1536 MB\t"
            f"Max Memory Used: 70 MB\t",
        )

    def test_it_shows_durations_with_two_decimals(self):
        line = report_line(REQUEST_ID, 2.999, 3, 128, 40, init_ms=250.0)
        self.assertIn("\tDuration: 3.00 ms\t", line)
        self.assertIn("\tInit Duration: 250.00 ms\t", line)
        self.assertIn("\tDuration: 900000.00 ms\t", report_line(REQUEST_ID, 900000, 900000, 10240, 10240))

    def test_it_shows_zero_memory_used_when_unknown(self):
        self.assertIn("\tMax Memory Used: 0 MB\t", report_line(REQUEST_ID, 5.0, 5, 128, None))

    def test_it_adds_the_status_of_a_timeout(self):
        self.assertEqual(
            report_line(REQUEST_ID, 3000.41, 3001, 128, 41, status="timeout", error_type="Sandbox.Timedout"),
            f"REPORT RequestId: {REQUEST_ID}\tDuration: 3000.41 ms\tBilled Duration: 3001 ms\tMemory Size: 128 MB\t"
            f"Max Memory Used: 41 MB\tStatus: timeout\t",
        )

    def test_it_adds_the_status_and_error_type_of_an_error(self):
        self.assertEqual(
            report_line(REQUEST_ID, 4.04, 140, 128, 38, init_ms=135.61, status="error",
                        error_type="Runtime.ImportModuleError"),
            f"REPORT RequestId: {REQUEST_ID}\tDuration: 4.04 ms\tBilled Duration: 140 ms\tMemory Size: 128 MB\t"
            f"Max Memory Used: 38 MB\tInit Duration: 135.61 ms\tStatus: error\tError Type: Runtime.ImportModuleError\t",
        )


@override_settings(**PRICES)
class RecordedBillTests(BaseTestCase):
    """What Invocation.finish stores: the same arithmetic, surviving the database's decimal columns."""

    def finish(self, **outcome):
        fn = self.create_function(handler_zip("def handler(event, context):\n    return 'ok'\n"), memory_size=1536)
        invocation = Invocation.objects.create(
            function=fn, config=fn.config_snapshot(), event="{}", memory_size_mb=1536, status=Invocation.Status.RUNNING,
        )
        self.assertTrue(invocation.finish(Outcome(status=Invocation.Status.SUCCEEDED, payload='"ok"', **outcome)))
        invocation.refresh_from_db()
        return invocation

    @override_settings(BILL_INIT_DURATION=True)
    def test_it_records_a_cold_starts_bill_with_the_init_duration(self):
        invocation = self.finish(log="START\n", cold_start=True, init_duration_ms=133.16, duration_ms=1.52,
                                 max_memory_used_mb=39)
        self.assertEqual(invocation.billed_duration_ms, 135)
        # 1.5 GB × 0.135 s = 0.2025 GB-s; × 0.0000166667 = 0.00000337500675; + 0.0000002
        self.assertEqual(invocation.gb_seconds, Decimal("0.2025"))
        self.assertEqual(invocation.cost, Decimal("0.0000035750067500"))
        self.assertEqual(invocation.duration_ms, Decimal("1.52"))
        self.assertEqual(invocation.init_duration_ms, Decimal("133.16"))
        self.assertTrue(invocation.log.endswith(
            f"END RequestId: {invocation.id}\nREPORT RequestId: {invocation.id}\tDuration: 1.52 ms\t"
            f"Billed Duration: 135 ms\tMemory Size: 1536 MB\tMax Memory Used: 39 MB\tInit Duration: 133.16 ms\t\n"
        ), invocation.log)

    @override_settings(BILL_INIT_DURATION=False)
    def test_it_records_a_cold_starts_bill_without_the_init_duration_when_init_is_not_billed(self):
        invocation = self.finish(log="START\n", cold_start=True, init_duration_ms=133.16, duration_ms=1.52,
                                 max_memory_used_mb=39)
        self.assertEqual(invocation.billed_duration_ms, 2)
        # 1.5 GB × 0.002 s = 0.003 GB-s; × 0.0000166667 = 0.0000000500001; + 0.0000002
        self.assertEqual(invocation.gb_seconds, Decimal("0.003"))
        self.assertEqual(invocation.cost, Decimal("0.0000002500001000"))
        # The REPORT line still shows how long init took, billed or not.
        self.assertIn("\tBilled Duration: 2 ms\t", invocation.log)
        self.assertIn("\tInit Duration: 133.16 ms\t", invocation.log)
