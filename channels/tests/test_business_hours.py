import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels.business_hours import ALWAYS_OPEN, MAX_CLOSED_DAYS, Schedule

LONDON, NEW_YORK = "Europe/London", "America/New_York"
HOUR, MINUTE, MICROSECOND = timedelta(hours=1), timedelta(minutes=1), timedelta(microseconds=1)

# 2025-03-07 is a Friday; the weeks below start from it.
FRIDAY, SATURDAY, SUNDAY, MONDAY, TUESDAY = (date(2025, 3, 7) + timedelta(days=n) for n in (0, 1, 2, 3, 4))
# Clock changes: New York jumps 02:00 -> 03:00 and goes back 02:00 -> 01:00; London jumps
# 01:00 -> 02:00 and goes back 02:00 -> 01:00 (all Sundays).
NY_SPRING, NY_FALL = date(2025, 3, 9), date(2025, 11, 2)
LONDON_SPRING, LONDON_FALL = date(2025, 3, 30), date(2025, 10, 26)


def local(zone, day, hour=0, minute=0, fold=0):
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone)).replace(fold=fold)


def weekdays(zone=LONDON, opens=time(9), closes=time(17), holidays=()):
    return Schedule(zone, tuple((weekday, opens, closes) for weekday in range(5)), frozenset(holidays))


def every_day(zone, opens, closes):
    return Schedule(zone, tuple((weekday, opens, closes) for weekday in range(7)))


# Building a schedule

def test_a_schedule_keeps_its_hours_sorted_so_equal_hours_make_equal_schedules():
    given = Schedule(LONDON, [(1, time(13), time(17)), (0, time(9), time(12)), (1, time(9), time(12))],
                     {date(2025, 12, 25)})

    assert given.weekly == ((0, time(9), time(12)), (1, time(9), time(12)), (1, time(13), time(17)))
    assert given == Schedule(LONDON, ((1, time(9), time(12)), (0, time(9), time(12)), (1, time(13), time(17))),
                             frozenset({date(2025, 12, 25)}))
    assert hash(given) == hash(Schedule(LONDON, given.weekly, given.holidays))
    assert given.tz == ZoneInfo(LONDON)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "utc", "", "../etc/passwd", None])
def test_an_unknown_zone_is_refused(zone):
    with pytest.raises(ValueError, match="zone"):
        Schedule(zone, ((0, time(9), time(17)),))


def test_intervals_that_overlap_on_one_day_are_refused_naming_the_day():
    with pytest.raises(ValueError, match=r"Tuesday: 09:00-13:00 overlaps 12:00-17:00"):
        Schedule(LONDON, ((1, time(9), time(13)), (1, time(12), time(17))))
    with pytest.raises(ValueError, match=r"Sunday: 20:00-24:00 overlaps 22:00-23:00"):
        Schedule(LONDON, ((6, time(20), None), (6, time(22), time(23))))


def test_intervals_that_touch_are_allowed_and_count_as_one_stretch():
    schedule = Schedule(LONDON, ((0, time(9), time(12)), (0, time(12), time(17))))

    assert schedule.is_open(local(LONDON, MONDAY, 12))
    assert schedule.add_business_time(local(LONDON, MONDAY, 11), 2 * HOUR) == local(LONDON, MONDAY, 13)


def test_closing_at_or_before_opening_is_refused():
    with pytest.raises(ValueError, match="closes 09:00:00 must be after opens 09:00:00"):
        Schedule(LONDON, ((0, time(9), time(9)),))
    with pytest.raises(ValueError, match="split a night shift"):
        Schedule(LONDON, ((0, time(22), time(6)),))


def test_midnight_as_a_closing_time_must_be_written_as_none():
    with pytest.raises(ValueError, match="use closes=None for midnight at the end of the day"):
        Schedule(LONDON, ((0, time(9), time(0)),))

    schedule = Schedule(LONDON, ((0, time(9), None),))
    assert schedule.business_time_between(local(LONDON, MONDAY), local(LONDON, TUESDAY)) == 15 * HOUR


@pytest.mark.parametrize("entry, message", [
    ((7, time(9), time(17)), "weekday must be 0"),
    ((-1, time(9), time(17)), "weekday must be 0"),
    ((True, time(9), time(17)), "weekday must be 0"),
    (("Mon", time(9), time(17)), "weekday must be 0"),
    ((0, "09:00", time(17)), "opens must be a naive datetime.time"),
    ((0, time(9, tzinfo=UTC), time(17)), "opens must be a naive datetime.time"),
    ((0, time(9), 17), "closes must be a naive datetime.time or None"),
    ((0, time(9)), r"\(weekday, opens, closes\)"),
])
def test_a_malformed_interval_is_refused_saying_what_is_wrong(entry, message):
    with pytest.raises(ValueError, match=message):
        Schedule(LONDON, (entry,))


def test_a_schedule_without_any_hours_is_refused():
    with pytest.raises(ValueError, match="ALWAYS_OPEN"):
        Schedule(LONDON, ())
    with pytest.raises(ValueError, match="weekly must be a tuple"):
        Schedule(LONDON, None)


@pytest.mark.parametrize("holidays", [{datetime(2025, 12, 25)}, {"2025-12-25"}, date(2025, 12, 25)])
def test_holidays_must_be_dates(holidays):
    with pytest.raises(ValueError, match="holidays"):
        Schedule(LONDON, ((0, time(9), time(17)),), holidays)


def test_naive_datetimes_and_negative_amounts_are_refused():
    schedule, naive = weekdays(), datetime(2025, 3, 10, 9)

    with pytest.raises(ValueError, match="at must be an aware datetime"):
        schedule.is_open(naive)
    with pytest.raises(ValueError, match="at must be an aware datetime"):
        schedule.next_opening(naive)
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        schedule.add_business_time(naive, HOUR)
    with pytest.raises(ValueError, match="end must be an aware datetime"):
        schedule.business_time_between(local(LONDON, MONDAY), naive)
    with pytest.raises(ValueError, match="must not be negative"):
        schedule.add_business_time(local(LONDON, MONDAY), -MICROSECOND)
    with pytest.raises(ValueError, match="is before start"):
        schedule.business_time_between(local(LONDON, MONDAY, 10), local(LONDON, MONDAY, 9))


# Open or closed, and the next opening

def test_open_from_the_opening_instant_until_just_before_the_closing_one():
    schedule = weekdays()

    assert not schedule.is_open(local(LONDON, MONDAY, 9) - MICROSECOND)
    assert schedule.is_open(local(LONDON, MONDAY, 9))
    assert schedule.is_open(local(LONDON, MONDAY, 17) - MICROSECOND)
    assert not schedule.is_open(local(LONDON, MONDAY, 17))
    assert not schedule.is_open(local(LONDON, SATURDAY, 12))


def test_the_time_is_read_on_the_schedules_clock_whatever_zone_it_is_given_in():
    schedule = weekdays(NEW_YORK)  # 09:00 in New York is 14:00 UTC in winter

    assert not schedule.is_open(datetime(2025, 3, 3, 13, 59, tzinfo=UTC))
    assert schedule.is_open(datetime(2025, 3, 3, 14, tzinfo=UTC))
    assert schedule.is_open(local("Asia/Tokyo", date(2025, 3, 4), 4))  # Monday 14:00 in New York


def test_the_next_opening_is_the_instant_itself_when_open():
    at = local(LONDON, MONDAY, 10, 30)

    assert weekdays().next_opening(at) == at
    assert weekdays().next_opening(at).tzinfo is UTC


@pytest.mark.parametrize("at, opening", [
    (local(LONDON, MONDAY, 7), local(LONDON, MONDAY, 9)),
    (local(LONDON, MONDAY, 17), local(LONDON, TUESDAY, 9)),
    (local(LONDON, FRIDAY, 18), local(LONDON, MONDAY, 9)),
    (local(LONDON, SUNDAY, 23, 59), local(LONDON, MONDAY, 9)),
])
def test_the_next_opening_skips_nights_and_weekends(at, opening):
    assert weekdays().next_opening(at) == opening


def test_the_next_opening_skips_a_holiday_monday():
    assert weekdays(holidays={MONDAY}).next_opening(local(LONDON, FRIDAY, 18)) == local(LONDON, TUESDAY, 9)


def test_a_night_shift_split_at_midnight_stays_open_through_it():
    # Monday 22:00 to Tuesday 06:00
    schedule = Schedule(LONDON, ((0, time(22), None), (1, time(0), time(6))))

    assert schedule.is_open(local(LONDON, TUESDAY))
    assert schedule.next_opening(local(LONDON, TUESDAY)) == local(LONDON, TUESDAY)
    assert schedule.add_business_time(local(LONDON, MONDAY, 23), 3 * HOUR) == local(LONDON, TUESDAY, 2)
    assert schedule.business_time_between(local(LONDON, MONDAY), local(LONDON, TUESDAY, 12)) == 8 * HOUR


def test_a_holiday_closes_its_own_date_only():
    # The holiday is Tuesday: Monday's shift runs to midnight, Tuesday's early hours are closed.
    schedule = Schedule(LONDON, ((0, time(22), None), (1, time(0), time(6))), frozenset({TUESDAY}))

    assert schedule.is_open(local(LONDON, MONDAY, 23))
    assert not schedule.is_open(local(LONDON, TUESDAY, 1))
    assert schedule.business_time_between(local(LONDON, MONDAY), local(LONDON, TUESDAY, 12)) == 2 * HOUR


def test_a_schedule_closed_too_long_is_an_error_not_an_endless_search():
    monday_only = Schedule(LONDON, ((0, time(9), time(17)),),
                           frozenset(MONDAY + timedelta(weeks=n) for n in range(60)))

    with pytest.raises(ValueError, match=f"no opening within {MAX_CLOSED_DAYS} days"):
        monday_only.next_opening(local(LONDON, FRIDAY))
    with pytest.raises(ValueError, match=f"no opening within {MAX_CLOSED_DAYS} days"):
        monday_only.add_business_time(local(LONDON, FRIDAY), HOUR)
    # Measuring a stretch with no opening in it is no search: it is simply zero.
    assert monday_only.business_time_between(local(LONDON, FRIDAY), local(LONDON, FRIDAY + timedelta(days=415))) \
        == timedelta(0)


def test_a_due_time_past_the_calendar_is_an_error_not_an_overflow():
    near_the_end = datetime(9999, 12, 1, tzinfo=UTC)

    for schedule in (weekdays(), ALWAYS_OPEN):
        with pytest.raises(ValueError, match="past the calendar"):
            schedule.add_business_time(near_the_end, timedelta(days=60))


def test_a_long_closure_within_the_bound_is_crossed():
    closure = frozenset(FRIDAY + timedelta(days=n) for n in range(MAX_CLOSED_DAYS - 1))
    schedule = Schedule(LONDON, tuple((weekday, time(9), time(17)) for weekday in range(7)), closure)

    first_open_day = FRIDAY + timedelta(days=MAX_CLOSED_DAYS - 1)

    assert schedule.next_opening(local(LONDON, FRIDAY)) == local(LONDON, first_open_day, 9)


# Due times

@pytest.mark.parametrize("start, due", [
    (local(LONDON, MONDAY, 7), local(LONDON, MONDAY, 11)),          # before opening: counts from 09:00
    (local(LONDON, MONDAY, 10), local(LONDON, MONDAY, 12)),         # during
    (local(LONDON, MONDAY, 15), local(LONDON, MONDAY, 17)),         # runs out exactly at the closing
    (local(LONDON, MONDAY, 16), local(LONDON, TUESDAY, 10)),        # runs over the night
    (local(LONDON, MONDAY, 17), local(LONDON, TUESDAY, 11)),        # exactly at the closing
    (local(LONDON, MONDAY, 20), local(LONDON, TUESDAY, 11)),        # after the closing
    (local(LONDON, FRIDAY, 16), local(LONDON, MONDAY, 10)),         # Friday afternoon to Monday
    (local(LONDON, FRIDAY, 19), local(LONDON, MONDAY, 11)),         # Friday evening to Monday
    (local(LONDON, SATURDAY, 12), local(LONDON, MONDAY, 11)),       # weekend
])
def test_two_business_hours_are_due_after_two_open_hours(start, due):
    assert weekdays().add_business_time(start, 2 * HOUR) == due


def test_a_holiday_monday_moves_the_due_time_to_tuesday():
    schedule = weekdays(holidays={MONDAY})

    assert schedule.add_business_time(local(LONDON, FRIDAY, 19), 2 * HOUR) == local(LONDON, TUESDAY, 11)
    assert schedule.add_business_time(local(LONDON, FRIDAY, 16), 2 * HOUR) == local(LONDON, TUESDAY, 10)


def test_a_zero_amount_is_due_at_the_start_open_or_closed():
    schedule = weekdays()

    assert schedule.add_business_time(local(LONDON, MONDAY, 10), timedelta(0)) == local(LONDON, MONDAY, 10)
    assert schedule.add_business_time(local(LONDON, SATURDAY, 10), timedelta(0)) == local(LONDON, SATURDAY, 10)


def test_a_lunch_break_does_not_count():
    schedule = Schedule(LONDON, ((0, time(9), time(12)), (0, time(13), time(17))))

    assert schedule.add_business_time(local(LONDON, MONDAY, 11), 2 * HOUR) == local(LONDON, MONDAY, 14)
    assert schedule.add_business_time(local(LONDON, MONDAY, 11), HOUR) == local(LONDON, MONDAY, 12)
    assert schedule.business_time_between(local(LONDON, MONDAY, 11), local(LONDON, MONDAY, 14)) == 2 * HOUR


def test_amounts_longer_than_a_day_run_over_many_days():
    schedule = weekdays()

    # 24 business hours: Monday, Tuesday and Wednesday in full
    wednesday = MONDAY + timedelta(days=2)
    assert schedule.add_business_time(local(LONDON, MONDAY, 9), 24 * HOUR) == local(LONDON, wednesday, 17)
    # 10 weeks of 40 hours, then one more hour
    ten_weeks_on = MONDAY + timedelta(weeks=10)
    assert schedule.add_business_time(local(LONDON, MONDAY, 9), 401 * HOUR) == local(LONDON, ten_weeks_on, 10)


def test_due_times_keep_microseconds():
    start = local(LONDON, MONDAY, 16, 59) + timedelta(seconds=59, microseconds=999_999)

    assert weekdays().add_business_time(start, 2 * MICROSECOND) == local(LONDON, TUESDAY, 9) + MICROSECOND


def test_when_nothing_is_configured_business_time_is_real_time():
    # In UTC: adding to a datetime in a zone with clock changes adds wall-clock time.
    start = local(NEW_YORK, NY_FALL, 0, 30).astimezone(UTC)

    assert ALWAYS_OPEN.is_open(start)
    assert ALWAYS_OPEN.next_opening(start) == start
    assert ALWAYS_OPEN.add_business_time(start, timedelta(days=9, hours=5)) == start + timedelta(days=9, hours=5)
    assert ALWAYS_OPEN.business_time_between(start, start + timedelta(days=40, seconds=1)) == timedelta(days=40,
                                                                                                      seconds=1)


# Clock changes

@pytest.mark.parametrize("zone, spring, fall", [(NEW_YORK, NY_SPRING, NY_FALL),
                                                (LONDON, LONDON_SPRING, LONDON_FALL)])
def test_one_to_three_at_night_is_one_real_hour_in_spring_and_three_in_autumn(zone, spring, fall):
    schedule = every_day(zone, time(1), time(3))

    assert schedule.business_time_between(local(zone, spring), local(zone, spring + timedelta(days=1))) == HOUR
    assert schedule.business_time_between(local(zone, fall), local(zone, fall + timedelta(days=1))) == 3 * HOUR
    assert schedule.add_business_time(local(zone, spring, 1), HOUR) == local(zone, spring, 3)
    assert schedule.add_business_time(local(zone, spring, 1), 2 * HOUR) == local(zone, spring + timedelta(days=1), 2)
    assert schedule.add_business_time(local(zone, fall, 1), 3 * HOUR) == local(zone, fall, 3)


@pytest.mark.parametrize("zone, spring, fall", [(NEW_YORK, NY_SPRING, NY_FALL),
                                                (LONDON, LONDON_SPRING, LONDON_FALL)])
def test_a_day_open_around_the_clock_has_23_hours_in_spring_and_25_in_autumn(zone, spring, fall):
    schedule = every_day(zone, time(0), None)

    assert schedule.business_time_between(local(zone, spring), local(zone, spring + timedelta(days=1))) == 23 * HOUR
    assert schedule.business_time_between(local(zone, fall), local(zone, fall + timedelta(days=1))) == 25 * HOUR
    assert schedule.add_business_time(local(zone, fall), 25 * HOUR) == local(zone, fall + timedelta(days=1))


@pytest.mark.parametrize("zone, spring, fall", [(NEW_YORK, NY_SPRING, NY_FALL),
                                                (LONDON, LONDON_SPRING, LONDON_FALL)])
def test_office_hours_are_unchanged_by_a_clock_change_on_the_weekend(zone, spring, fall):
    schedule = weekdays(zone)

    for sunday in (spring, fall):
        friday, monday = sunday - timedelta(days=2), sunday + timedelta(days=1)
        assert schedule.add_business_time(local(zone, friday, 16), 2 * HOUR) == local(zone, monday, 10)
        assert schedule.business_time_between(local(zone, friday, 12), local(zone, monday, 12)) == 8 * HOUR
        assert schedule.next_opening(local(zone, friday, 17)) == local(zone, monday, 9)


def test_an_opening_in_the_skipped_hour_opens_when_the_clock_jumps():
    # New York, 9 March 2025: 01:59:59 EST is followed by 03:00:00 EDT (07:00 UTC).
    opens_in_gap = Schedule(NEW_YORK, ((6, time(2, 30), time(5)),))
    inside_gap = Schedule(NEW_YORK, ((6, time(2, 10), time(2, 40)), (6, time(4), time(5))))

    assert opens_in_gap.next_opening(local(NEW_YORK, SATURDAY)) == datetime(2025, 3, 9, 7, tzinfo=UTC)
    assert opens_in_gap.business_time_between(local(NEW_YORK, NY_SPRING), local(NEW_YORK, MONDAY)) == 2 * HOUR
    assert inside_gap.business_time_between(local(NEW_YORK, NY_SPRING), local(NEW_YORK, MONDAY)) == HOUR
    assert inside_gap.next_opening(local(NEW_YORK, NY_SPRING)) == local(NEW_YORK, NY_SPRING, 4)


def test_a_closing_in_the_repeated_hour_is_its_first_occurrence():
    # London, 26 October 2025: 01:00-02:00 happens twice, first in BST then in GMT.
    schedule = Schedule(LONDON, ((6, time(0), time(1, 30)),))
    first_half_past_one = local(LONDON, LONDON_FALL, 1, 30)

    assert schedule.business_time_between(local(LONDON, LONDON_FALL), local(LONDON, LONDON_FALL + timedelta(days=1))) \
        == 90 * MINUTE
    assert not schedule.is_open(first_half_past_one)
    assert not schedule.is_open(local(LONDON, LONDON_FALL, 1, 15, fold=1))  # the second 01:15
    assert schedule.is_open(local(LONDON, LONDON_FALL, 1, 15, fold=0))


def test_instants_given_on_the_local_clock_are_told_apart_in_the_repeated_hour():
    # Open 01:00-03:00 on the night New York goes back: three real hours.
    schedule = every_day(NEW_YORK, time(1), time(3))
    first, second = local(NEW_YORK, NY_FALL, 1, 30), local(NEW_YORK, NY_FALL, 1, 30, fold=1)

    assert schedule.business_time_between(first, second) == HOUR
    # Compared in UTC: an instant of the repeated hour never equals one in another zone (PEP 495).
    assert schedule.add_business_time(first, HOUR) == second.astimezone(UTC)


def test_a_zone_that_skips_midnight_opens_its_day_at_the_jump():
    # Santiago, 7-8 September 2024: 23:59:59 on Saturday (-04) is followed by 01:00 on Sunday (-03).
    zone, saturday, sunday = "America/Santiago", date(2024, 9, 7), date(2024, 9, 8)
    night_shift = Schedule(zone, ((5, time(22), None), (6, time(0), time(2))))

    assert night_shift.business_time_between(local(zone, saturday), local(zone, sunday, 12)) == 3 * HOUR
    assert night_shift.is_open(datetime(2024, 9, 8, 4, tzinfo=UTC))  # the jump itself
    assert night_shift.add_business_time(local(zone, saturday, 23), 2 * HOUR) == local(zone, sunday, 2)


def test_a_clock_going_back_across_midnight_keeps_the_new_day_open():
    # St John's, 7 November 2010: at 00:01 on Sunday (-02:30) clocks went back to 23:01 on Saturday
    # (-03:30). Sunday's hours start at its first midnight; the hour read as Saturday is inside them.
    schedule = Schedule("America/St_Johns", ((6, time(0), time(6)),))
    reads_saturday = datetime(2010, 11, 7, 2, 45, tzinfo=UTC)

    assert reads_saturday.astimezone(schedule.tz).date() == date(2010, 11, 6)
    assert schedule.is_open(reads_saturday)
    assert schedule.next_opening(reads_saturday) == reads_saturday
    assert schedule.business_time_between(datetime(2010, 11, 6, tzinfo=UTC), datetime(2010, 11, 8, tzinfo=UTC)) \
        == 7 * HOUR


# Measuring open time

def test_business_time_across_a_weekend_is_the_sum_of_the_open_hours_on_either_side():
    schedule = weekdays()

    assert schedule.business_time_between(local(LONDON, FRIDAY, 15), local(LONDON, MONDAY, 11)) == 4 * HOUR
    assert schedule.business_time_between(local(LONDON, FRIDAY, 18), local(LONDON, MONDAY, 8)) == timedelta(0)
    assert schedule.business_time_between(local(LONDON, MONDAY), local(LONDON, MONDAY + timedelta(weeks=1))) \
        == 40 * HOUR
    assert weekdays(holidays={TUESDAY}).business_time_between(
        local(LONDON, MONDAY), local(LONDON, MONDAY + timedelta(weeks=1))) == 32 * HOUR


def test_no_time_passes_between_an_instant_and_itself():
    assert weekdays().business_time_between(local(LONDON, MONDAY, 10), local(LONDON, MONDAY, 10)) == timedelta(0)


# Properties over many generated schedules, starts and amounts

SCHEDULES = [
    weekdays(LONDON, holidays={date(2025, 12, 25), date(2025, 12, 26), LONDON_SPRING + timedelta(days=1)}),
    weekdays(NEW_YORK, time(8, 30), time(18)),
    every_day(NEW_YORK, time(1), time(3)),
    every_day(LONDON, time(0, 30), time(2, 30)),
    Schedule(NEW_YORK, ((0, time(22), None), (1, time(0), time(6)), (4, time(9), time(12)),
                        (4, time(13), time(17, 45)), (6, time(0), None))),
    Schedule("Australia/Lord_Howe", ((5, time(1), time(3)), (6, time(1), time(3)))),  # a half-hour DST zone
    Schedule("America/Santiago", ((5, time(22), None), (6, time(0), time(2)))),
    ALWAYS_OPEN,
]
AROUND = [NY_SPRING, NY_FALL, LONDON_SPRING, LONDON_FALL, date(2024, 9, 8), date(2025, 4, 6), date(2025, 10, 5),
          date(2025, 12, 24)]


def generated_cases(count, seed):
    randomness = random.Random(seed)
    for _ in range(count):
        schedule = randomness.choice(SCHEDULES)
        day = randomness.choice(AROUND) + timedelta(days=randomness.randint(-3, 3))
        start = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(microseconds=randomness.randrange(
            int(timedelta(days=1).total_seconds()) * 10**6))
        if randomness.random() < 0.2:  # on an hour or half hour, where openings and clock changes are
            start = start.replace(minute=randomness.choice((0, 30)), second=0, microsecond=0)
        amount = randomness.choice([
            timedelta(0), MICROSECOND, timedelta(minutes=randomness.randint(1, 180)),
            timedelta(hours=randomness.randint(1, 300)),
            timedelta(microseconds=randomness.randrange(int(timedelta(days=20).total_seconds()) * 10**6)),
        ])
        yield schedule, start, amount


@pytest.mark.parametrize("seed", range(4))
def test_the_open_time_up_to_a_due_time_is_the_amount(seed):
    for schedule, start, amount in generated_cases(250, seed):
        due = schedule.add_business_time(start, amount)

        assert schedule.business_time_between(start, due) == amount, (schedule, start, amount)
        if amount:
            # due when the last bit of open time passes: open just before it
            assert schedule.is_open(due - MICROSECOND), (schedule, start, amount, due)


@pytest.mark.parametrize("seed", range(4))
def test_the_due_time_of_the_open_time_between_two_instants_is_no_later_than_the_second(seed):
    randomness = random.Random(seed)
    for schedule, start, amount in generated_cases(250, seed + 100):
        end = start + amount * randomness.random() * 3
        measured = schedule.business_time_between(start, end)
        due = schedule.add_business_time(start, measured)

        assert measured <= end - start and due <= end, (schedule, start, end)
        if schedule.is_open(end - MICROSECOND) and end > start:
            assert due == end, (schedule, start, end, due)


@pytest.mark.parametrize("seed", range(2))
def test_open_time_adds_up_over_consecutive_stretches(seed):
    randomness = random.Random(seed)
    for schedule, start, amount in generated_cases(200, seed + 200):
        middle = start + amount * randomness.random()
        end = middle + amount * randomness.random()

        assert schedule.business_time_between(start, middle) + schedule.business_time_between(middle, end) \
            == schedule.business_time_between(start, end), (schedule, start, middle, end)


@pytest.mark.parametrize("seed", range(2))
def test_the_next_opening_is_open_and_nothing_before_it_is(seed):
    for schedule, start, _ in generated_cases(200, seed + 300):
        opening = schedule.next_opening(start)

        assert opening >= start and schedule.is_open(opening), (schedule, start, opening)
        assert schedule.business_time_between(start, opening) == timedelta(0), (schedule, start, opening)
        assert schedule.is_open(start) == (opening == start)
