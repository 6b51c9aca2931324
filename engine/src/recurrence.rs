//! RFC 5545 recurrence evaluated in the store's IANA time zone.
//!
//! A template's rule is floating local time: "every Thursday 21:00" means 21:00
//! on the store's wall clock, whatever its UTC offset that week. The `rrule`
//! crate only yields dates here (evaluated in UTC-as-local, which has no DST);
//! this module then places each date's start time in the store's zone.

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use rrule::{Frequency, RRule, RRuleSet, Unvalidated, Validated};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, StoreId, TemplateId};

/// Longest window [`Recurrence::occurrences`] evaluates. A rule yields at most
/// one occurrence per local date, so this also caps the number returned.
pub const MAX_WINDOW_DAYS: i64 = 3 * 366;

/// Years a schedule may start in or be evaluated up to. `rrule` stops silently
/// at year 10000, and evaluation walks from the start date, so an ancient start
/// would make every evaluation slow.
pub const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// What is wrong with a schedule, a time zone or an evaluation window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("time zone {name:?} is not an IANA time zone name; use the Area/City form, e.g. \"Europe/Berlin\" or \"America/New_York\"")]
    UnknownTimeZone { name: String },
    #[error(
        "the recurrence rule is empty; give an RFC 5545 RRULE such as \"FREQ=WEEKLY;BYDAY=TH\""
    )]
    Empty,
    #[error("recurrence rule {rule:?} is not a valid RFC 5545 RRULE ({reason}); write it like \"FREQ=WEEKLY;BYDAY=TH\"")]
    Invalid { rule: String, reason: String },
    #[error("recurrence rule {rule:?} repeats {freq}; a task list recurs at most daily, use FREQ=DAILY, WEEKLY, MONTHLY or YEARLY")]
    TooFrequent { rule: String, freq: String },
    #[error("recurrence rule {rule:?} sets {part}; the time of day comes from the template's start time, remove {part}")]
    TimeOfDayInRule { rule: String, part: String },
    #[error(
        "recurrence rule {rule:?} has {what}; rules run in each store's own time zone, remove it"
    )]
    ZoneInRule { rule: String, what: &'static str },
    #[error("recurrence rule's DTSTART {found:?} differs from the template's start {expected}; remove DTSTART or make it equal")]
    DtStartConflict {
        found: String,
        expected: NaiveDateTime,
    },
    #[error("recurrence has a {property} line; only one RRULE (plus an optional DTSTART equal to the template's start) is supported")]
    UnsupportedLine { property: String },
    #[error("recurrence rule {rule:?} has both COUNT and UNTIL; RFC 5545 allows one of them, keep the one you mean")]
    CountAndUntil { rule: String },
    #[error("recurrence rule {rule:?} ends (UNTIL) before its first occurrence on {first}; move UNTIL later or the start date earlier")]
    UntilBeforeFirst { rule: String, first: NaiveDate },
    #[error("recurrence rule {rule:?} never produces a date from {start} on; check the BY... parts (e.g. BYMONTHDAY=30 with BYMONTH=2)")]
    NoOccurrence { rule: String, start: NaiveDate },
    #[error("recurrence rule {rule:?} is too sparse to evaluate (the rrule iteration limit was hit); simplify the rule")]
    TooSparse { rule: String },
    #[error(
        "date {date} is outside the supported years {SUPPORTED_YEARS:?}; use a real calendar date"
    )]
    DateOutOfRange { date: NaiveDate },
    #[error("start time {time} has fractional seconds; give whole seconds, e.g. 21:00")]
    SubSecondTime { time: NaiveTime },
    #[error(
        "occurrence window {from}..={until} ends before it starts; pass the earlier date first"
    )]
    WindowReversed { from: NaiveDate, until: NaiveDate },
    #[error("occurrence window {from}..={until} spans {days} days; the limit is {MAX_WINDOW_DAYS}, ask for a shorter window")]
    WindowTooLong {
        from: NaiveDate,
        until: NaiveDate,
        days: i64,
    },
}

/// Parse an IANA zone name such as `Europe/Berlin` (case-sensitive, as in tzdb).
pub fn parse_time_zone(name: &str) -> Result<Tz, RecurrenceError> {
    name.parse().map_err(|_| RecurrenceError::UnknownTimeZone {
        name: name.to_owned(),
    })
}

/// A template's schedule: an RRULE run as floating local time from
/// `start_date`, each occurrence starting at `time_of_day` on the store's clock.
///
/// Dates follow the `rrule` crate (and python-dateutil): `start_date` itself
/// is an occurrence only if it matches the rule, and COUNT counts from
/// `start_date`, not from the window asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecurrenceFields", into = "RecurrenceFields")]
pub struct Recurrence {
    /// The rule part only (no `RRULE:`, no DTSTART line), as validated.
    rrule: String,
    start_date: NaiveDate,
    time_of_day: NaiveTime,
}

/// The wire form; deserializing goes through [`Recurrence::new`] so a stored or
/// received schedule is validated like a typed one.
#[derive(Serialize, Deserialize)]
struct RecurrenceFields {
    rrule: String,
    start_date: NaiveDate,
    time_of_day: NaiveTime,
}

impl TryFrom<RecurrenceFields> for Recurrence {
    type Error = RecurrenceError;
    fn try_from(f: RecurrenceFields) -> Result<Self, RecurrenceError> {
        Recurrence::new(&f.rrule, f.start_date, f.time_of_day)
    }
}

impl From<Recurrence> for RecurrenceFields {
    fn from(r: Recurrence) -> Self {
        Self {
            rrule: r.rrule,
            start_date: r.start_date,
            time_of_day: r.time_of_day,
        }
    }
}

/// One occurrence of a schedule in one store's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    /// The date the rule produced: the occurrence's identity, even when the
    /// start was moved by a DST gap.
    pub local_date: NaiveDate,
    /// The store's wall-clock start: `local_date` at the time of day, or the
    /// end of the DST gap if that time does not exist that day.
    pub local_start: NaiveDateTime,
    pub start_utc: DateTime<Utc>,
}

/// The instance document id for `occ` in `store`, keyed by the local date so
/// every replica derives the same id without talking.
pub fn occurrence_instance_id(
    template: TemplateId,
    store: &StoreId,
    occ: &Occurrence,
) -> DocumentId {
    DocumentId::recurring_instance(template, store, occ.local_date)
}

/// UNTIL as written: RFC 5545 floating forms are local to each store; the `Z`
/// form is an instant. Parsed here because `rrule` would read a floating UNTIL
/// in the machine's zone, which differs between hub and stores.
#[derive(Debug, Clone, Copy)]
enum Until {
    Date(NaiveDate),
    Floating(NaiveDateTime),
    Instant(DateTime<Utc>),
}

impl Until {
    fn admits(self, occ: &Occurrence, nominal_start: NaiveDateTime) -> bool {
        match self {
            Until::Date(d) => occ.local_date <= d,
            Until::Floating(t) => nominal_start <= t,
            Until::Instant(t) => occ.start_utc <= t,
        }
    }

    /// True if no store could see an occurrence starting at local `first`.
    fn is_before(self, first: NaiveDateTime) -> bool {
        match self {
            Until::Date(d) => d < first.date(),
            Until::Floating(t) => t < first,
            // No zone is more than 14 h ahead of UTC.
            Until::Instant(t) => t.naive_utc() < first - TimeDelta::hours(14),
        }
    }
}

/// A date-time as `rrule` sees it: the local wall clock labelled UTC.
fn floating(t: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&t)
}

enum IcalTime {
    Date(NaiveDate),
    Floating(NaiveDateTime),
    Utc(NaiveDateTime),
}

/// `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
fn parse_ical_time(value: &str) -> Option<IcalTime> {
    let (value, utc) = match value.strip_suffix(['Z', 'z']) {
        Some(v) => (v, true),
        None => (value, false),
    };
    if !value
        .chars()
        .all(|c| c.is_ascii_digit() || c == 'T' || c == 't')
    {
        return None;
    }
    match value.len() {
        8 if !utc => NaiveDate::parse_from_str(value, "%Y%m%d")
            .ok()
            .map(IcalTime::Date),
        15 => {
            let t =
                NaiveDateTime::parse_from_str(&value.to_ascii_uppercase(), "%Y%m%dT%H%M%S").ok()?;
            Some(if utc {
                IcalTime::Utc(t)
            } else {
                IcalTime::Floating(t)
            })
        }
        _ => None,
    }
}

/// Strip `RRULE:` and a DTSTART line that agrees with the template's start.
fn rule_body(text: &str, first: NaiveDateTime) -> Result<&str, RecurrenceError> {
    let mut body = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let upper = line.to_ascii_uppercase();
        if upper.contains("TZID") {
            return Err(RecurrenceError::ZoneInRule {
                rule: text.to_owned(),
                what: "a TZID",
            });
        }
        if upper.starts_with("DTSTART") {
            let value = line.split_once(':').map_or("", |(_, v)| v.trim());
            let matches = match parse_ical_time(value) {
                Some(IcalTime::Date(d)) => d == first.date(),
                Some(IcalTime::Floating(t)) => t == first,
                Some(IcalTime::Utc(_)) => {
                    return Err(RecurrenceError::ZoneInRule {
                        rule: text.to_owned(),
                        what: "a UTC DTSTART (ending in Z)",
                    })
                }
                None => false,
            };
            if !matches {
                return Err(RecurrenceError::DtStartConflict {
                    found: value.to_owned(),
                    expected: first,
                });
            }
            continue;
        }
        let rule = if upper.starts_with("RRULE:") {
            &line["RRULE:".len()..]
        } else if let Some((head, _)) = line.split_once(':') {
            // Another iCalendar property: EXDATE, RDATE, EXRULE...
            let property = head.split_once(';').map_or(head, |(p, _)| p);
            return Err(RecurrenceError::UnsupportedLine {
                property: property.to_owned(),
            });
        } else {
            line
        };
        if body.replace(rule.trim()).is_some() {
            return Err(RecurrenceError::UnsupportedLine {
                property: "second RRULE".to_owned(),
            });
        }
    }
    body.filter(|b| !b.is_empty()).ok_or(RecurrenceError::Empty)
}

/// A rule ready to run: `rrule` without UNTIL, plus UNTIL applied by us.
struct Rule {
    rrule: RRule<Validated>,
    until: Option<Until>,
}

fn parse_rule(body: &str, start_date: NaiveDate) -> Result<Rule, RecurrenceError> {
    let invalid = |reason: String| RecurrenceError::Invalid {
        rule: body.to_owned(),
        reason,
    };
    let mut until = None;
    let mut has_count = false;
    // Reported after the FREQ check: FREQ=MINUTELY;BYSECOND=0 is wrong first of all for its FREQ.
    let mut time_part = None;
    let mut kept = Vec::new();
    for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(invalid(format!("{part:?} is not KEY=VALUE")));
        };
        match key.trim().to_ascii_uppercase().as_str() {
            "UNTIL" => {
                let parsed = match parse_ical_time(value.trim()) {
                    Some(IcalTime::Date(d)) => Until::Date(d),
                    Some(IcalTime::Floating(t)) => Until::Floating(t),
                    Some(IcalTime::Utc(t)) => Until::Instant(t.and_utc()),
                    None => {
                        return Err(invalid(format!(
                            "UNTIL={value} is not YYYYMMDD or YYYYMMDDTHHMMSS[Z]"
                        )))
                    }
                };
                if until.replace(parsed).is_some() {
                    return Err(invalid("UNTIL is given twice".to_owned()));
                }
            }
            part @ ("BYHOUR" | "BYMINUTE" | "BYSECOND") => time_part = Some(part.to_owned()),
            key => {
                has_count |= key == "COUNT";
                kept.push(part);
            }
        }
    }
    if has_count && until.is_some() {
        return Err(RecurrenceError::CountAndUntil {
            rule: body.to_owned(),
        });
    }
    let rrule: RRule<Unvalidated> = kept
        .join(";")
        .parse()
        .map_err(|e: rrule::RRuleError| invalid(e.to_string()))?;
    if rrule.get_freq() > Frequency::Daily {
        return Err(RecurrenceError::TooFrequent {
            rule: body.to_owned(),
            freq: rrule.get_freq().to_string(),
        });
    }
    if let Some(part) = time_part {
        return Err(RecurrenceError::TimeOfDayInRule {
            rule: body.to_owned(),
            part,
        });
    }
    if rrule.get_interval() == 0 {
        return Err(invalid("INTERVAL must be at least 1".to_owned()));
    }
    let rrule = rrule
        .validate(floating(start_date.and_time(NaiveTime::MIN)))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Rule { rrule, until })
}

impl Recurrence {
    /// Validate a schedule. `rrule` is the rule part (`FREQ=WEEKLY;BYDAY=TH`),
    /// optionally prefixed `RRULE:`, optionally after a `DTSTART` line that
    /// must equal `start_date` + `time_of_day` and carry no zone.
    pub fn new(
        rrule: &str,
        start_date: NaiveDate,
        time_of_day: NaiveTime,
    ) -> Result<Self, RecurrenceError> {
        if time_of_day.nanosecond() != 0 {
            return Err(RecurrenceError::SubSecondTime { time: time_of_day });
        }
        check_year(start_date)?;
        let first = start_date.and_time(time_of_day);
        let body = rule_body(rrule, first)?;
        let rule = parse_rule(body, start_date)?;
        // Reject rules that can never fire now, rather than at every evaluation.
        let result = RRuleSet::new(floating(start_date.and_time(NaiveTime::MIN)))
            .rrule(rule.rrule)
            .all(1);
        let Some(first_date) = result.dates.first().map(|d| d.date_naive()) else {
            return Err(RecurrenceError::NoOccurrence {
                rule: body.to_owned(),
                start: start_date,
            });
        };
        if rule
            .until
            .is_some_and(|u| u.is_before(first_date.and_time(time_of_day)))
        {
            return Err(RecurrenceError::UntilBeforeFirst {
                rule: body.to_owned(),
                first: first_date,
            });
        }
        Ok(Self {
            rrule: body.to_owned(),
            start_date,
            time_of_day,
        })
    }

    /// The rule part, without `RRULE:` or DTSTART.
    pub fn rrule(&self) -> &str {
        &self.rrule
    }

    pub fn start_date(&self) -> NaiveDate {
        self.start_date
    }

    pub fn time_of_day(&self) -> NaiveTime {
        self.time_of_day
    }

    /// Occurrences whose local date lies in `from..=until`, in order, in `tz`.
    ///
    /// A start time that falls in a spring-forward gap moves to the end of the
    /// gap (02:30 on a 02:00→03:00 night starts at 03:00): the first instant
    /// the wall clock has passed the intended time. A start time that occurs
    /// twice (fall-back) takes the earlier instant, so the list opens on the
    /// first pass of the clock. `local_date` never moves.
    ///
    /// The window is at most [`MAX_WINDOW_DAYS`] long; work is linear in the
    /// span from `start_date` to `until` at the rule's frequency.
    pub fn occurrences(
        &self,
        tz: Tz,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<Occurrence>, RecurrenceError> {
        if until < from {
            return Err(RecurrenceError::WindowReversed { from, until });
        }
        check_year(until)?;
        let days = (until - from).num_days() + 1;
        if days > MAX_WINDOW_DAYS {
            return Err(RecurrenceError::WindowTooLong { from, until, days });
        }
        let rule = parse_rule(&self.rrule, self.start_date)?;
        // At most one date per day, so `days + 1` is never reached and
        // `limited` can only mean rrule's own iteration limit.
        let limit = u16::try_from(days + 1).expect("MAX_WINDOW_DAYS fits in u16");
        let result = RRuleSet::new(floating(self.start_date.and_time(NaiveTime::MIN)))
            .rrule(rule.rrule)
            .after(floating(from.and_time(NaiveTime::MIN)))
            .before(floating(until.and_time(NaiveTime::MIN)))
            .all(limit);
        if result.limited {
            return Err(RecurrenceError::TooSparse {
                rule: self.rrule.clone(),
            });
        }
        Ok(result
            .dates
            .iter()
            .map(|d| {
                let nominal = d.date_naive().and_time(self.time_of_day);
                let (local_start, start_utc) = place(tz, nominal);
                let occ = Occurrence {
                    local_date: d.date_naive(),
                    local_start,
                    start_utc,
                };
                (occ, nominal)
            })
            .take_while(|(occ, nominal)| rule.until.is_none_or(|u| u.admits(occ, *nominal)))
            .map(|(occ, _)| occ)
            .collect())
    }
}

fn check_year(date: NaiveDate) -> Result<(), RecurrenceError> {
    if SUPPORTED_YEARS.contains(&date.year()) {
        Ok(())
    } else {
        Err(RecurrenceError::DateOutOfRange { date })
    }
}

/// The wall-clock start and instant for local time `local` in `tz`: the
/// earlier instant if it occurs twice, the end of the gap if it never occurs.
fn place(tz: Tz, local: NaiveDateTime) -> (NaiveDateTime, DateTime<Utc>) {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return (local, t.with_timezone(&Utc));
    }
    // chrono-tz has no transition lookup, so binary-search the first instant
    // whose wall clock reads `local` or later. UTC offsets are within ±14 h,
    // so 30 h either side brackets it.
    let wall = |secs: i64| {
        let t = DateTime::from_timestamp(secs, 0).expect("rrule keeps years within ±10000");
        (t.with_timezone(&tz).naive_local(), t)
    };
    let target = local.and_utc().timestamp();
    let (mut lo, mut hi) = (target - 30 * 3600, target + 30 * 3600);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid).0 >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    wall(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("test time")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        date(y, mo, d).and_time(time(h, mi)).and_utc()
    }

    fn tz(name: &str) -> Tz {
        parse_time_zone(name).expect("test zone")
    }

    fn dates(occs: &[Occurrence]) -> Vec<NaiveDate> {
        occs.iter().map(|o| o.local_date).collect()
    }

    fn eval(rule: &str, start: NaiveDate, from: NaiveDate, until: NaiveDate) -> Vec<Occurrence> {
        Recurrence::new(rule, start, time(9, 0))
            .expect("valid rule")
            .occurrences(tz("Europe/Berlin"), from, until)
            .expect("valid window")
    }

    #[test]
    fn weekly_thursday_keeps_local_time_across_dst_changes() {
        let thursdays =
            Recurrence::new("FREQ=WEEKLY;BYDAY=TH", date(2026, 1, 1), time(21, 0)).unwrap();
        // (zone, Thursday before the change, UTC start, Thursday after, UTC start)
        let cases = [
            (
                "Europe/Berlin",
                date(2026, 10, 22),
                utc(2026, 10, 22, 19, 0),
                date(2026, 10, 29),
                utc(2026, 10, 29, 20, 0),
            ),
            (
                "Europe/Berlin",
                date(2026, 3, 26),
                utc(2026, 3, 26, 20, 0),
                date(2026, 4, 2),
                utc(2026, 4, 2, 19, 0),
            ),
            // New York 21:00 is already the next day in UTC.
            (
                "America/New_York",
                date(2026, 10, 29),
                utc(2026, 10, 30, 1, 0),
                date(2026, 11, 5),
                utc(2026, 11, 6, 2, 0),
            ),
            (
                "America/New_York",
                date(2026, 3, 5),
                utc(2026, 3, 6, 2, 0),
                date(2026, 3, 12),
                utc(2026, 3, 13, 1, 0),
            ),
        ];
        for (zone, before, before_utc, after, after_utc) in cases {
            let occs = thursdays.occurrences(tz(zone), before, after).unwrap();
            assert_eq!(dates(&occs), [before, after], "{zone}");
            assert!(
                occs.iter().all(|o| o.local_start.time() == time(21, 0)),
                "{zone}: {occs:?}"
            );
            assert_eq!(occs[0].start_utc, before_utc, "{zone}");
            assert_eq!(occs[1].start_utc, after_utc, "{zone}");
        }
    }

    #[test]
    fn start_in_spring_gap_moves_to_end_of_gap() {
        let daily = Recurrence::new("FREQ=DAILY", date(2026, 1, 1), time(2, 30)).unwrap();
        let occs = daily
            .occurrences(tz("Europe/Berlin"), date(2026, 3, 28), date(2026, 3, 30))
            .unwrap();
        assert_eq!(
            dates(&occs),
            [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
        );
        assert_eq!(occs[0].start_utc, utc(2026, 3, 28, 1, 30));
        // 02:30 does not exist on 29 March: the clocks jump 02:00 -> 03:00 at 01:00Z.
        assert_eq!(occs[1].local_start, date(2026, 3, 29).and_time(time(3, 0)));
        assert_eq!(occs[1].start_utc, utc(2026, 3, 29, 1, 0));
        assert_eq!(occs[2].start_utc, utc(2026, 3, 30, 0, 30));
    }

    #[test]
    fn start_in_fall_back_overlap_takes_earlier_instant() {
        let daily = Recurrence::new("FREQ=DAILY", date(2026, 1, 1), time(2, 30)).unwrap();
        let occs = daily
            .occurrences(tz("Europe/Berlin"), date(2026, 10, 25), date(2026, 10, 25))
            .unwrap();
        assert_eq!(occs.len(), 1);
        assert_eq!(
            occs[0].local_start,
            date(2026, 10, 25).and_time(time(2, 30))
        );
        // 02:30 CEST (+02), not 02:30 CET (+01) = 01:30Z.
        assert_eq!(occs[0].start_utc, utc(2026, 10, 25, 0, 30));
    }

    #[test]
    fn last_day_of_month_follows_month_length() {
        let occs = eval(
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            date(2027, 1, 1),
            date(2027, 1, 1),
            date(2028, 4, 30),
        );
        let got = dates(&occs);
        for d in [
            date(2027, 1, 31),
            date(2027, 2, 28),
            date(2027, 4, 30),
            date(2028, 2, 29),
            date(2028, 4, 30),
        ] {
            assert!(got.contains(&d), "{d} missing from {got:?}");
        }
        assert_eq!(got.len(), 16);
    }

    #[test]
    fn monthday_31_skips_short_months() {
        let occs = eval(
            "FREQ=MONTHLY;BYMONTHDAY=31",
            date(2026, 1, 1),
            date(2026, 1, 1),
            date(2026, 7, 31),
        );
        assert_eq!(
            dates(&occs),
            [
                date(2026, 1, 31),
                date(2026, 3, 31),
                date(2026, 5, 31),
                date(2026, 7, 31)
            ]
        );
    }

    #[test]
    fn first_monday_and_last_weekday_of_month() {
        let occs = eval(
            "FREQ=MONTHLY;BYDAY=1MO",
            date(2026, 1, 1),
            date(2026, 1, 1),
            date(2026, 4, 30),
        );
        assert_eq!(
            dates(&occs),
            [
                date(2026, 1, 5),
                date(2026, 2, 2),
                date(2026, 3, 2),
                date(2026, 4, 6)
            ]
        );
        let occs = eval(
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            date(2026, 1, 1),
            date(2026, 1, 1),
            date(2026, 5, 31),
        );
        assert_eq!(
            dates(&occs),
            [
                date(2026, 1, 30),
                date(2026, 2, 27),
                date(2026, 3, 31),
                date(2026, 4, 30),
                date(2026, 5, 29)
            ]
        );
    }

    #[test]
    fn count_is_counted_from_start_not_window() {
        let start = date(2026, 1, 1);
        assert_eq!(
            eval("FREQ=DAILY;COUNT=3", start, start, date(2026, 1, 31)).len(),
            3
        );
        assert_eq!(
            dates(&eval(
                "FREQ=DAILY;COUNT=3",
                start,
                date(2026, 1, 2),
                date(2026, 1, 31)
            )),
            [date(2026, 1, 2), date(2026, 1, 3)]
        );
    }

    #[test]
    fn until_forms_are_respected() {
        let (start, end) = (date(2026, 1, 1), date(2026, 1, 31));
        // A date UNTIL includes that local date.
        assert_eq!(
            eval("FREQ=DAILY;UNTIL=20260105", start, start, end).len(),
            5
        );
        // A floating UNTIL compares with the local start (09:00).
        assert_eq!(
            eval("FREQ=DAILY;UNTIL=20260105T085959", start, start, end).len(),
            4
        );
        assert_eq!(
            eval("RRULE:FREQ=DAILY;UNTIL=20260105T090000", start, start, end).len(),
            5
        );
        // A UTC UNTIL is an instant: 09:00 Berlin is 08:00Z in January.
        assert_eq!(
            eval("FREQ=DAILY;UNTIL=20260105T080000Z", start, start, end).len(),
            5
        );
        assert_eq!(
            eval("FREQ=DAILY;UNTIL=20260105T075959Z", start, start, end).len(),
            4
        );
    }

    #[test]
    fn window_bounds_are_inclusive_and_start_date_applies() {
        let start = date(2026, 1, 1);
        assert_eq!(
            dates(&eval(
                "FREQ=DAILY",
                start,
                date(2026, 1, 10),
                date(2026, 1, 10)
            )),
            [date(2026, 1, 10)]
        );
        assert_eq!(
            eval("FREQ=DAILY", start, date(2026, 1, 10), date(2026, 1, 12)).len(),
            3
        );
        // Nothing before start_date; a non-matching start date is not an occurrence.
        assert_eq!(
            eval("FREQ=DAILY", start, date(2025, 12, 30), date(2026, 1, 2)).len(),
            2
        );
        assert_eq!(
            dates(&eval(
                "FREQ=WEEKLY;BYDAY=TH",
                date(2026, 1, 5),
                date(2026, 1, 1),
                date(2026, 1, 10)
            )),
            [date(2026, 1, 8)]
        );
    }

    #[test]
    fn prefix_and_matching_dtstart_are_accepted() {
        let plain = Recurrence::new("FREQ=WEEKLY;BYDAY=TH", date(2026, 1, 1), time(21, 0)).unwrap();
        for text in [
            "RRULE:FREQ=WEEKLY;BYDAY=TH",
            "  rrule:FREQ=WEEKLY;BYDAY=TH\n",
            "DTSTART:20260101T210000\nRRULE:FREQ=WEEKLY;BYDAY=TH",
            "DTSTART;VALUE=DATE:20260101\nRRULE:FREQ=WEEKLY;BYDAY=TH",
        ] {
            assert_eq!(
                Recurrence::new(text, date(2026, 1, 1), time(21, 0)),
                Ok(plain.clone()),
                "{text:?}"
            );
        }
    }

    /// Each bad input gives the expected error, and its message names the problem.
    #[test]
    fn bad_input_is_rejected_with_a_clear_message() {
        let new = |rule: &str| Recurrence::new(rule, date(2026, 1, 1), time(21, 0)).unwrap_err();
        let cases: Vec<(RecurrenceError, &str)> = vec![
            (new("every thursday please"), "not a valid RFC 5545 RRULE"),
            (new("FREQ=WEEKLY;BYDAY=XX"), "XX"),
            (new("FREQ=HOURLY"), "at most daily"),
            (new("FREQ=MINUTELY;BYSECOND=0"), "at most daily"),
            (new(""), "empty"),
            (new("  \n RRULE: "), "empty"),
            (new("FREQ=DAILY;BYHOUR=9"), "remove BYHOUR"),
            (
                new("DTSTART;TZID=Europe/Berlin:20260101T210000\nRRULE:FREQ=DAILY"),
                "TZID",
            ),
            (
                new("DTSTART:20260101T200000Z\nRRULE:FREQ=DAILY"),
                "UTC DTSTART",
            ),
            (
                new("DTSTART:20260102T210000\nRRULE:FREQ=DAILY"),
                "differs from the template's start 2026-01-01 21:00:00",
            ),
            (
                new("RRULE:FREQ=DAILY\nEXDATE:20260105T210000"),
                "EXDATE line",
            ),
            (
                new("RRULE:FREQ=DAILY\nRDATE;VALUE=DATE:20260105"),
                "RDATE line",
            ),
            (new("FREQ=DAILY\nFREQ=WEEKLY"), "second RRULE"),
            (
                new("FREQ=DAILY;COUNT=3;UNTIL=20260110"),
                "both COUNT and UNTIL",
            ),
            (
                new("FREQ=DAILY;UNTIL=20251231"),
                "before its first occurrence",
            ),
            (new("FREQ=DAILY;UNTIL=tomorrow"), "UNTIL=tomorrow"),
            (
                new("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"),
                "never produces a date",
            ),
            (
                new("FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"),
                "never produces a date",
            ),
            (new("FREQ=DAILY;INTERVAL=0"), "INTERVAL must be at least 1"),
            (
                parse_time_zone("Europe/Berln").unwrap_err(),
                "\"Europe/Berln\" is not an IANA time zone",
            ),
            (parse_time_zone("").unwrap_err(), "e.g. \"Europe/Berlin\""),
        ];
        for (err, needle) in cases {
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
        assert!(matches!(
            new("FREQ=HOURLY"),
            RecurrenceError::TooFrequent { .. }
        ));
        let sub = NaiveTime::from_hms_milli_opt(21, 0, 0, 500).unwrap();
        assert!(matches!(
            Recurrence::new("FREQ=DAILY", date(2026, 1, 1), sub),
            Err(RecurrenceError::SubSecondTime { .. })
        ));
    }

    #[test]
    fn windows_are_bounded() {
        let daily = Recurrence::new("FREQ=DAILY", date(2026, 1, 1), time(9, 0)).unwrap();
        let berlin = tz("Europe/Berlin");
        let err = daily
            .occurrences(berlin, date(2026, 1, 1), date(2030, 1, 1))
            .unwrap_err();
        assert!(err.to_string().contains("shorter window"), "{err}");
        let err = daily
            .occurrences(berlin, date(2026, 2, 1), date(2026, 1, 1))
            .unwrap_err();
        assert!(err.to_string().contains("ends before it starts"), "{err}");
        let err = daily
            .occurrences(berlin, date(9999, 12, 1), date(10000, 1, 1))
            .unwrap_err();
        assert!(
            err.to_string().contains("outside the supported years"),
            "{err}"
        );
        let err = Recurrence::new("FREQ=DAILY", date(1, 1, 1), time(9, 0)).unwrap_err();
        assert!(
            err.to_string().contains("outside the supported years"),
            "{err}"
        );
        let last = date(2026, 1, 1) + TimeDelta::days(MAX_WINDOW_DAYS - 1);
        assert_eq!(
            daily
                .occurrences(berlin, date(2026, 1, 1), last)
                .unwrap()
                .len() as i64,
            MAX_WINDOW_DAYS
        );
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let r =
            Recurrence::new("RRULE:FREQ=WEEKLY;BYDAY=TH", date(2026, 1, 1), time(21, 0)).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"rrule":"FREQ=WEEKLY;BYDAY=TH","start_date":"2026-01-01","time_of_day":"21:00:00"}"#
        );
        assert_eq!(serde_json::from_str::<Recurrence>(&json).unwrap(), r);
        let bad = json.replace("WEEKLY;BYDAY=TH", "HOURLY");
        let err = serde_json::from_str::<Recurrence>(&bad).unwrap_err();
        assert!(err.to_string().contains("at most daily"), "{err}");
    }

    #[test]
    fn instance_ids_are_stable_and_use_the_local_date() {
        let template = TemplateId(Uuid::from_u128(42));
        let (s1, s2): (StoreId, StoreId) = ("store-1".parse().unwrap(), "store-2".parse().unwrap());
        let la = tz("America/Los_Angeles");
        let ids = |store: &StoreId| {
            let r = Recurrence::new("FREQ=DAILY", date(2026, 6, 1), time(23, 30)).unwrap();
            let occs = r
                .occurrences(la, date(2026, 6, 1), date(2026, 6, 2))
                .unwrap();
            occs.iter()
                .map(|o| occurrence_instance_id(template, store, o))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&s1), ids(&s1));
        assert_ne!(ids(&s1)[0], ids(&s1)[1]);
        assert_ne!(ids(&s1)[0], ids(&s2)[0]);

        let r = Recurrence::new("FREQ=DAILY", date(2026, 6, 1), time(23, 30)).unwrap();
        let occ = r
            .occurrences(la, date(2026, 6, 1), date(2026, 6, 1))
            .unwrap()[0];
        // 23:30 PDT on 1 June is 06:30Z on 2 June; the id must follow the shop's date.
        assert_eq!(occ.start_utc, utc(2026, 6, 2, 6, 30));
        assert_eq!(
            occurrence_instance_id(template, &s1, &occ),
            DocumentId::recurring_instance(template, &s1, date(2026, 6, 1))
        );
        assert_ne!(
            occurrence_instance_id(template, &s1, &occ),
            DocumentId::recurring_instance(template, &s1, date(2026, 6, 2))
        );
    }

    const ZONES: [&str; 6] = [
        "Europe/Berlin",
        "America/New_York",
        "America/Los_Angeles",
        "Australia/Lord_Howe", // 30-minute DST shift
        "Asia/Kolkata",
        "UTC",
    ];

    fn rule_strategy() -> impl Strategy<Value = String> {
        let days = prop::sample::subsequence(vec!["MO", "TU", "WE", "TH", "FR", "SA", "SU"], 1..=7);
        prop_oneof![
            (1u32..4).prop_map(|i| format!("FREQ=DAILY;INTERVAL={i}")),
            (1u32..4, days)
                .prop_map(|(i, d)| format!("FREQ=WEEKLY;INTERVAL={i};BYDAY={}", d.join(","))),
        ]
    }

    proptest! {
        #[test]
        fn occurrences_are_ordered_in_window_and_at_the_local_time(
            rule in rule_strategy(),
            zone in prop::sample::select(&ZONES[..]),
            start_offset in 0i64..3000,
            hour in prop::sample::select(vec![0u32, 1, 2, 3, 9, 21, 23]),
            minute in prop::sample::select(vec![0u32, 15, 30, 59]),
            from_offset in -30i64..3000,
            len in 0i64..400,
        ) {
            let tz = tz(zone);
            let base = date(2020, 1, 1);
            let at = time(hour, minute);
            let start = base + TimeDelta::days(start_offset);
            let from = base + TimeDelta::days(from_offset);
            let until = from + TimeDelta::days(len);
            let r = Recurrence::new(&rule, start, at).unwrap();
            let occs = r.occurrences(tz, from, until).unwrap();
            for pair in occs.windows(2) {
                prop_assert!(pair[0].local_date < pair[1].local_date);
            }
            for o in &occs {
                prop_assert!(from <= o.local_date && o.local_date <= until && start <= o.local_date);
                let nominal = o.local_date.and_time(at);
                if tz.from_local_datetime(&nominal).earliest().is_some() {
                    prop_assert_eq!(o.local_start, nominal);
                } else {
                    prop_assert!(o.local_start > nominal && o.local_start - nominal <= TimeDelta::hours(1));
                }
                prop_assert_eq!(o.start_utc.with_timezone(&tz).naive_local(), o.local_start);
            }
        }
    }
}
