//! Business hours of an outlet, in the tenant's time zone: when a handoff finds nobody online
//! outside them, the customer is told when the team will answer.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::storage::collections as tags;
use crate::storage::{Collection, OutletId, Record};

/// Minutes after midnight, 0..=1440, written "HH:MM" ("24:00" closes at midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(u16);

impl ClockTime {
    pub fn new(hour: u16, minute: u16) -> Option<Self> {
        let m = hour.checked_mul(60)?.checked_add(minute)?;
        (minute < 60 && m <= 24 * 60).then_some(Self(m))
    }
    pub fn hour(&self) -> i8 {
        (self.0 / 60) as i8
    }
    pub fn minute(&self) -> i8 {
        (self.0 % 60) as i8
    }
    pub fn minutes(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl std::str::FromStr for ClockTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time of day like 08:00");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        ClockTime::new(h, m).ok_or_else(bad)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One opening of a day: from `open` (inclusive) to `close` (exclusive).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Span {
    pub open: ClockTime,
    pub close: ClockTime,
}

/// A week of openings, Monday first. A day with no spans is closed; a span past midnight is
/// written as two (22:00-24:00 and 00:00-02:00 the next day).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    #[serde(default)]
    pub monday: Vec<Span>,
    #[serde(default)]
    pub tuesday: Vec<Span>,
    #[serde(default)]
    pub wednesday: Vec<Span>,
    #[serde(default)]
    pub thursday: Vec<Span>,
    #[serde(default)]
    pub friday: Vec<Span>,
    #[serde(default)]
    pub saturday: Vec<Span>,
    #[serde(default)]
    pub sunday: Vec<Span>,
}

impl Record for BusinessHours {
    const VERSION: u16 = 1;
    const NAME: &'static str = "business hours";
}

/// Outlet id → its hours; the all-zero key holds the tenant's default (for conversations without
/// an outlet and outlets without hours of their own).
pub const HOURS: Collection<BusinessHours> = Collection::new(tags::ROUTING_HOURS);

pub fn hours_key(outlet: Option<OutletId>) -> [u8; 16] {
    outlet.map(|o| *o.as_bytes()).unwrap_or([0; 16])
}

const MAX_SPANS_PER_DAY: usize = 8;

impl BusinessHours {
    pub fn day(&self, weekday: Weekday) -> &[Span] {
        match weekday {
            Weekday::Monday => &self.monday,
            Weekday::Tuesday => &self.tuesday,
            Weekday::Wednesday => &self.wednesday,
            Weekday::Thursday => &self.thursday,
            Weekday::Friday => &self.friday,
            Weekday::Saturday => &self.saturday,
            Weekday::Sunday => &self.sunday,
        }
    }

    fn days_mut(&mut self) -> [(&'static str, &mut Vec<Span>); 7] {
        [
            ("monday", &mut self.monday),
            ("tuesday", &mut self.tuesday),
            ("wednesday", &mut self.wednesday),
            ("thursday", &mut self.thursday),
            ("friday", &mut self.friday),
            ("saturday", &mut self.saturday),
            ("sunday", &mut self.sunday),
        ]
    }

    /// Sorts each day's spans and refuses empty, inverted or overlapping ones.
    pub fn normalize(mut self) -> Result<Self, (String, String)> {
        for (name, spans) in self.days_mut() {
            if spans.len() > MAX_SPANS_PER_DAY {
                return Err((
                    name.into(),
                    format!("at most {MAX_SPANS_PER_DAY} spans a day"),
                ));
            }
            spans.sort_by_key(|s| s.open);
            for s in spans.iter() {
                if s.open >= s.close {
                    return Err((
                        name.into(),
                        format!("{}-{} closes before it opens", s.open, s.close),
                    ));
                }
            }
            for pair in spans.windows(2) {
                if pair[1].open < pair[0].close {
                    return Err((
                        name.into(),
                        format!(
                            "{}-{} overlaps {}-{}",
                            pair[0].open, pair[0].close, pair[1].open, pair[1].close
                        ),
                    ));
                }
            }
        }
        Ok(self)
    }

    fn never_open(&self) -> bool {
        [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ]
        .iter()
        .all(|d| self.day(*d).is_empty())
    }

    /// The spans of `date` as instants in `tz` (a wall time skipped by a DST change moves
    /// forward, as jiff's compatible disambiguation does).
    fn instants(&self, date: Date, tz: &TimeZone) -> Vec<(Timestamp, Timestamp)> {
        let at = |t: ClockTime| -> Option<Timestamp> {
            let dt = if t.minutes() == 24 * 60 {
                date.tomorrow().ok()?.at(0, 0, 0, 0)
            } else {
                date.at(t.hour(), t.minute(), 0, 0)
            };
            dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
        };
        self.day(date.weekday())
            .iter()
            .filter_map(|s| Some((at(s.open)?, at(s.close)?)))
            .collect()
    }

    /// Whether the team is in at `now`.
    pub fn is_open(&self, now: Timestamp, tz: &TimeZone) -> bool {
        let today = now.to_zoned(tz.clone()).date();
        // Yesterday too: a 24:00 close is the start of today.
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.instants(d, tz))
            .any(|(open, close)| open <= now && now < close)
    }

    /// When the team is next in, if not now: the start of the next span within a week. None when
    /// open now or never open.
    pub fn next_opening(&self, now: Timestamp, tz: &TimeZone) -> Option<Zoned> {
        if self.never_open() || self.is_open(now, tz) {
            return None;
        }
        let mut date = now.to_zoned(tz.clone()).date();
        for _ in 0..8 {
            if let Some((open, _)) = self
                .instants(date, tz)
                .into_iter()
                .find(|(open, _)| *open > now)
            {
                return Some(open.to_zoned(tz.clone()));
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// What the customer should hear about the team's hours right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// In hours (or no hours set): someone answers shortly.
    Open,
    /// Outside hours: the team is back at this time (tenant's zone).
    ClosedUntil(Zoned),
    /// Hours are set but never open.
    Closed,
}

pub fn availability(hours: Option<&BusinessHours>, now: Timestamp, tz: &TimeZone) -> Availability {
    let Some(hours) = hours else {
        return Availability::Open;
    };
    if hours.never_open() {
        return Availability::Closed;
    }
    match hours.next_opening(now, tz) {
        Some(at) => Availability::ClosedUntil(at),
        None => Availability::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(open: &str, close: &str) -> Span {
        Span {
            open: open.parse().unwrap(),
            close: close.parse().unwrap(),
        }
    }

    fn weekdays_9_to_5() -> BusinessHours {
        let day = vec![span("09:00", "17:00")];
        BusinessHours {
            monday: day.clone(),
            tuesday: day.clone(),
            wednesday: day.clone(),
            thursday: day.clone(),
            friday: day,
            ..Default::default()
        }
    }

    fn at(s: &str, tz: &str) -> (Timestamp, TimeZone) {
        let tz = TimeZone::get(tz).unwrap();
        let ts = s
            .parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(tz.clone())
            .unwrap()
            .timestamp();
        (ts, tz)
    }

    #[test]
    fn clock_times_parse_and_print() {
        assert_eq!("08:30".parse::<ClockTime>().unwrap().to_string(), "08:30");
        assert_eq!("8:05".parse::<ClockTime>().unwrap().to_string(), "08:05");
        assert_eq!("24:00".parse::<ClockTime>().unwrap().minutes(), 1440);
        for bad in ["24:01", "12:60", "noon", "12", "-1:00", "12:5"] {
            assert!(bad.parse::<ClockTime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_spans_are_refused() {
        let inverted = BusinessHours {
            monday: vec![span("17:00", "09:00")],
            ..Default::default()
        };
        assert!(inverted.normalize().is_err());
        let overlapping = BusinessHours {
            friday: vec![span("09:00", "12:00"), span("11:00", "14:00")],
            ..Default::default()
        };
        assert_eq!(overlapping.normalize().unwrap_err().0, "friday");
    }

    #[test]
    fn open_and_next_opening_in_the_tenants_zone() {
        let hours = weekdays_9_to_5();
        // Wednesday 2024-05-15 10:00 in Jakarta: open.
        let (now, tz) = at("2024-05-15T10:00", "Asia/Jakarta");
        assert!(hours.is_open(now, &tz));
        assert_eq!(availability(Some(&hours), now, &tz), Availability::Open);
        // Wednesday 20:00: back Thursday 09:00.
        let (now, tz) = at("2024-05-15T20:00", "Asia/Jakarta");
        let next = hours.next_opening(now, &tz).unwrap();
        assert_eq!(next.date().to_string(), "2024-05-16");
        assert_eq!((next.hour(), next.minute()), (9, 0));
        // Early Wednesday: back the same day.
        let (now, tz) = at("2024-05-15T06:30", "Asia/Jakarta");
        assert_eq!(
            hours.next_opening(now, &tz).unwrap().date().to_string(),
            "2024-05-15"
        );
        // Friday evening: back Monday.
        let (now, tz) = at("2024-05-17T18:00", "Asia/Jakarta");
        let next = hours.next_opening(now, &tz).unwrap();
        assert_eq!(next.date().to_string(), "2024-05-20");
        assert_eq!(next.weekday(), Weekday::Monday);
        // The same instant is a different local time elsewhere: Friday 18:00 Jakarta is Friday
        // 11:00 UTC, inside UTC hours.
        assert!(hours.is_open(now, &TimeZone::UTC));
    }

    #[test]
    fn midnight_closing_and_split_overnight_spans() {
        let hours = BusinessHours {
            saturday: vec![span("18:00", "24:00")],
            sunday: vec![span("00:00", "02:00")],
            ..Default::default()
        };
        let (now, tz) = at("2024-05-18T23:59", "UTC");
        assert!(hours.is_open(now, &tz));
        let (now, tz) = at("2024-05-19T01:00", "UTC");
        assert!(hours.is_open(now, &tz));
        let (now, tz) = at("2024-05-19T03:00", "UTC");
        assert!(!hours.is_open(now, &tz));
        assert_eq!(
            hours.next_opening(now, &tz).unwrap().date().to_string(),
            "2024-05-25"
        );
    }

    #[test]
    fn no_hours_is_always_open_and_empty_hours_never() {
        let (now, tz) = at("2024-05-15T03:00", "UTC");
        assert_eq!(availability(None, now, &tz), Availability::Open);
        assert_eq!(
            availability(Some(&BusinessHours::default()), now, &tz),
            Availability::Closed
        );
    }

    #[test]
    fn a_dst_gap_moves_the_opening_forward() {
        // New York skips 02:00-03:00 on 2024-03-10; a 02:30 opening happens at 03:30 local.
        let hours = BusinessHours {
            sunday: vec![span("02:30", "10:00")],
            ..Default::default()
        };
        let (now, tz) = at("2024-03-10T00:30", "America/New_York");
        let next = hours.next_opening(now, &tz).unwrap();
        assert_eq!((next.hour(), next.minute()), (3, 30));
    }
}
