//! Monthly billing periods, anchored on the subscription's start date in the tenant's time zone.
//!
//! Period `n` runs from local midnight of `anchor + n months` to local midnight of
//! `anchor + (n+1) months`. Each start is computed from the anchor (never from the previous
//! period), so an anchor on the 31st gives Feb 29, Mar 31, Apr 30, May 31, ... Midnights are
//! resolved in the time zone's rules for that date, so a period holding a daylight-saving switch
//! is an hour shorter or longer than 31 days, and a boundary is always local midnight.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("time zone {0:?} is unknown to this machine's time zone database")]
    TimeZone(String),
    #[error("date out of range: {0}")]
    Range(String),
}

/// Where a subscription's periods start, and in which zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub anchor: Date,
    pub tz: TimeZone,
}

/// One monthly period.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// 0 for the first period of the subscription.
    pub number: u32,
    pub start: Zoned,
    pub end: Zoned,
}

impl Period {
    pub fn start_ms(&self) -> i64 {
        self.start.timestamp().as_millisecond()
    }
    pub fn end_ms(&self) -> i64 {
        self.end.timestamp().as_millisecond()
    }
    pub fn duration_ms(&self) -> i64 {
        self.end_ms() - self.start_ms()
    }
    /// The local start date, e.g. "2024-04-16": how people (and the API) name a period.
    pub fn label(&self) -> String {
        self.start.date().to_string()
    }
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start.timestamp() <= at && at < self.end.timestamp()
    }
    pub fn view(&self) -> PeriodView {
        PeriodView {
            number: self.number,
            label: self.label(),
            start: self.start.to_string(),
            end: self.end.to_string(),
            start_ms: self.start_ms(),
            end_ms: self.end_ms(),
        }
    }
}

/// A period as shown by the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeriodView {
    pub number: u32,
    pub label: String,
    /// RFC 9557 with the zone, e.g. "2024-04-16T00:00:00+07:00[Asia/Jakarta]".
    pub start: String,
    pub end: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

fn range(e: jiff::Error) -> PeriodError {
    PeriodError::Range(e.to_string())
}

impl Calendar {
    pub fn new(anchor: Date, time_zone: &str) -> Result<Self, PeriodError> {
        let tz = TimeZone::get(time_zone).map_err(|_| PeriodError::TimeZone(time_zone.into()))?;
        Ok(Self { anchor, tz })
    }

    /// The local date of `at` in `time_zone`: the anchor of a subscription starting then.
    pub fn anchor_for(at: Timestamp, time_zone: &str) -> Result<Date, PeriodError> {
        let tz = TimeZone::get(time_zone).map_err(|_| PeriodError::TimeZone(time_zone.into()))?;
        Ok(at.to_zoned(tz).date())
    }

    fn start_of(&self, number: u32) -> Result<Zoned, PeriodError> {
        let date = self
            .anchor
            .checked_add(i64::from(number).months())
            .map_err(range)?;
        date.to_zoned(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map_err(range)
    }

    pub fn period(&self, number: u32) -> Result<Period, PeriodError> {
        Ok(Period {
            number,
            start: self.start_of(number)?,
            end: self.start_of(number + 1)?,
        })
    }

    /// The period holding `at`. Instants before the anchor belong to period 0.
    pub fn period_at(&self, at: Timestamp) -> Result<Period, PeriodError> {
        let local = at.to_zoned(self.tz.clone());
        let months = (i64::from(local.year()) - i64::from(self.anchor.year())) * 12
            + (i64::from(local.month()) - i64::from(self.anchor.month()));
        let mut number = u32::try_from(months.max(0)).unwrap_or(u32::MAX - 1);
        // The month difference is right or one too many (the anchor's day not reached yet, or a
        // clamped day); step until the period holds `at`.
        while number > 0 && self.start_of(number)?.timestamp() > at {
            number -= 1;
        }
        while self.start_of(number + 1)?.timestamp() <= at {
            number += 1;
        }
        self.period(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cal(anchor: Date, tz: &str) -> Calendar {
        Calendar::new(anchor, tz).unwrap()
    }

    #[test]
    fn periods_start_at_local_midnight_of_the_anchor_day() {
        let c = cal(date(2024, 4, 16), "Asia/Jakarta");
        let p = c.period_at(at("2024-04-20T12:00:00Z")).unwrap();
        assert_eq!(p.number, 0);
        assert_eq!(
            p.start.to_string(),
            "2024-04-16T00:00:00+07:00[Asia/Jakarta]"
        );
        assert_eq!(p.end.to_string(), "2024-05-16T00:00:00+07:00[Asia/Jakarta]");
        assert_eq!(p.label(), "2024-04-16");
        // Jakarta has no DST: every boundary is 17:00 UTC the day before.
        let boundary = at("2024-05-15T17:00:00Z");
        assert_eq!(c.period_at(boundary).unwrap().number, 1);
        assert_eq!(
            c.period_at(boundary.checked_sub(1.millisecond()).unwrap())
                .unwrap()
                .number,
            0
        );
    }

    #[test]
    fn the_boundary_is_local_midnight_not_utc_midnight() {
        let c = cal(date(2024, 1, 1), "Asia/Jakarta");
        // 2024-02-01 03:00 UTC is already Feb 1 10:00 in Jakarta: the new period.
        assert_eq!(c.period_at(at("2024-01-31T17:00:00Z")).unwrap().number, 1);
        assert_eq!(c.period_at(at("2024-01-31T16:59:59Z")).unwrap().number, 0);
        // In UTC the same instants are both in January.
        let utc = cal(date(2024, 1, 1), "UTC");
        assert_eq!(utc.period_at(at("2024-01-31T17:00:00Z")).unwrap().number, 0);
    }

    #[test]
    fn end_of_month_anchors_clamp_without_drifting() {
        let c = cal(date(2024, 1, 31), "UTC");
        let labels: Vec<String> = (0..5).map(|n| c.period(n).unwrap().label()).collect();
        assert_eq!(
            labels,
            [
                "2024-01-31",
                "2024-02-29",
                "2024-03-31",
                "2024-04-30",
                "2024-05-31"
            ]
        );
        assert_eq!(c.period_at(at("2024-03-01T00:00:00Z")).unwrap().number, 1);
        assert_eq!(c.period_at(at("2024-03-31T00:00:00Z")).unwrap().number, 2);
    }

    #[test]
    fn a_period_across_the_spring_switch_is_an_hour_short_in_new_york() {
        // DST began 2024-03-10 02:00 EST -> 03:00 EDT.
        let c = cal(date(2024, 2, 15), "America/New_York");
        let p = c.period(0).unwrap();
        assert_eq!(
            p.start.to_string(),
            "2024-02-15T00:00:00-05:00[America/New_York]"
        );
        assert_eq!(
            p.end.to_string(),
            "2024-03-15T00:00:00-04:00[America/New_York]"
        );
        assert_eq!(p.duration_ms(), (29 * 24 - 1) * 3_600_000);
        // The boundary is local midnight in EDT: 04:00 UTC, not 05:00.
        assert_eq!(c.period_at(at("2024-03-15T04:00:00Z")).unwrap().number, 1);
        assert_eq!(c.period_at(at("2024-03-15T03:59:59Z")).unwrap().number, 0);
        // The night of the switch itself stays inside the period.
        assert_eq!(c.period_at(at("2024-03-10T07:30:00Z")).unwrap().number, 0);
    }

    #[test]
    fn a_period_across_the_autumn_switch_is_an_hour_long_in_berlin() {
        // DST ended 2024-10-27 03:00 CEST -> 02:00 CET.
        let c = cal(date(2024, 10, 1), "Europe/Berlin");
        let p = c.period(0).unwrap();
        assert_eq!(
            p.start.to_string(),
            "2024-10-01T00:00:00+02:00[Europe/Berlin]"
        );
        assert_eq!(
            p.end.to_string(),
            "2024-11-01T00:00:00+01:00[Europe/Berlin]"
        );
        assert_eq!(p.duration_ms(), (31 * 24 + 1) * 3_600_000);
        assert_eq!(c.period_at(at("2024-10-31T22:59:59Z")).unwrap().number, 0);
        assert_eq!(c.period_at(at("2024-10-31T23:00:00Z")).unwrap().number, 1);
    }

    #[test]
    fn a_boundary_on_a_day_without_midnight_starts_at_the_first_instant() {
        // America/Havana skipped 00:00-01:00 on 2024-03-10.
        let c = cal(date(2024, 2, 10), "America/Havana");
        let p = c.period(0).unwrap();
        assert_eq!(
            p.end.to_string(),
            "2024-03-10T01:00:00-04:00[America/Havana]"
        );
        assert_eq!(c.period_at(p.end.timestamp()).unwrap().number, 1);
    }

    #[test]
    fn periods_tile_time_without_gaps_or_overlaps() {
        for tz in [
            "America/New_York",
            "Europe/Berlin",
            "Asia/Jakarta",
            "Australia/Lord_Howe",
        ] {
            let c = cal(date(2023, 12, 31), tz);
            for n in 0..30 {
                let p = c.period(n).unwrap();
                let next = c.period(n + 1).unwrap();
                assert_eq!(p.end, next.start, "{tz} {n}");
                assert_eq!(c.period_at(p.start.timestamp()).unwrap().number, n);
                let last = p.end.timestamp().checked_sub(1.millisecond()).unwrap();
                assert_eq!(c.period_at(last).unwrap().number, n);
            }
        }
    }

    #[test]
    fn before_the_anchor_is_period_zero() {
        let c = cal(date(2024, 6, 1), "UTC");
        assert_eq!(c.period_at(at("2024-05-01T00:00:00Z")).unwrap().number, 0);
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(Calendar::new(date(2024, 1, 1), "Mars/Olympus").is_err());
    }
}
