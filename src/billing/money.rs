//! Money as an integer count of the currency's minor unit (cents), never a float. Amounts are
//! parsed from and printed as decimal strings ("99.00") using the currency's ISO 4217 exponent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not a three-letter ISO 4217 code")]
    Currency(String),
    #[error("amount {amount:?} is not a decimal number with at most {digits} decimals")]
    Amount { amount: String, digits: u32 },
    #[error("amount is too large")]
    Overflow,
    #[error("cannot combine {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// An ISO 4217 currency code (upper case).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        let bytes: [u8; 3] = upper
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::Currency(code.to_string()))?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::Currency(code.to_string()));
        }
        Ok(Self(bytes))
    }

    pub fn code(&self) -> &str {
        // Constructed only from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Decimal places of the minor unit (ISO 4217 exponent); 2 unless listed.
    pub fn minor_digits(&self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units of `currency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// Parses a decimal amount in major units ("99", "99.5", "99.00", "-3.25").
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let digits = currency.minor_digits();
        let bad = || MoneyError::Amount {
            amount: amount.to_string(),
            digits,
        };
        let text = amount.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((w, f)) => (w, f),
            None => (unsigned, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > digits as usize
            || (unsigned.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let scale = 10i64.pow(digits);
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let mut frac: i64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| bad())?
        };
        for _ in fraction.len()..digits as usize {
            frac *= 10;
        }
        let magnitude = whole
            .checked_mul(scale)
            .and_then(|m| m.checked_add(frac))
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(
            if negative { -magnitude } else { magnitude },
            currency,
        ))
    }

    /// The amount in major units with exactly the currency's decimals ("99.00").
    pub fn amount(&self) -> String {
        let digits = self.currency.minor_digits();
        let sign = if self.minor < 0 { "-" } else { "" };
        let magnitude = self.minor.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{magnitude}");
        }
        let scale = 10u64.pow(digits);
        format!(
            "{sign}{}.{:0width$}",
            magnitude / scale,
            magnitude % scale,
            width = digits as usize
        )
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money::new(minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_mul(self, quantity: u64) -> Result<Money, MoneyError> {
        i64::try_from(quantity)
            .ok()
            .and_then(|q| self.minor.checked_mul(q))
            .map(|minor| Money::new(minor, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self × numerator / denominator`, rounded half away from zero to the minor unit, computed
    /// in 128-bit integers (proration: seconds on a plan over seconds in the period).
    pub fn prorate(self, numerator: i64, denominator: i64) -> Result<Money, MoneyError> {
        if denominator <= 0 || numerator < 0 {
            return Err(MoneyError::Overflow);
        }
        let product = self.minor as i128 * numerator as i128;
        let d = denominator as i128;
        let half_up = (product.abs() * 2 + d) / (2 * d);
        let rounded = if product < 0 { -half_up } else { half_up };
        i64::try_from(rounded)
            .map(|minor| Money::new(minor, self.currency))
            .map_err(|_| MoneyError::Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency)
    }
}

/// JSON: `{"minor": 9900, "currency": "USD", "amount": "99.00"}`. On input either `minor` or the
/// decimal string `amount` is accepted (a JSON number with a fraction never is: no floats).
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 3)?;
        st.serialize_field("minor", &self.minor)?;
        st.serialize_field("currency", &self.currency)?;
        st.serialize_field("amount", &self.amount())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            minor: Option<i64>,
            currency: Currency,
            amount: Option<String>,
        }
        let w = Wire::deserialize(d)?;
        let from_amount = w
            .amount
            .as_deref()
            .map(|a| Money::parse(a, w.currency))
            .transpose()
            .map_err(serde::de::Error::custom)?;
        match (w.minor, from_amount) {
            (Some(minor), Some(parsed)) if parsed.minor != minor => Err(serde::de::Error::custom(
                "minor and amount disagree; give one of them",
            )),
            (Some(minor), _) => Ok(Money::new(minor, w.currency)),
            (None, Some(parsed)) => Ok(parsed),
            (None, None) => Err(serde::de::Error::custom(
                "give the amount as \"minor\" (integer, e.g. 9900) or \"amount\" (decimal string, e.g. \"99.00\")",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    #[test]
    fn parses_and_prints_decimal_amounts() {
        assert_eq!(Money::parse("99", Currency::USD).unwrap(), usd(9900));
        assert_eq!(Money::parse("99.5", Currency::USD).unwrap(), usd(9950));
        assert_eq!(Money::parse("0.05", Currency::USD).unwrap(), usd(5));
        assert_eq!(Money::parse("-3.25", Currency::USD).unwrap(), usd(-325));
        assert_eq!(usd(9900).amount(), "99.00");
        assert_eq!(usd(-5).amount(), "-0.05");
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(Money::parse("1500", jpy).unwrap().minor, 1500);
        assert!(Money::parse("1500.5", jpy).is_err());
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::new(1234, kwd).amount(), "1.234");
        for bad in [
            "", ".", "1.", ".5", "1.234", "1e3", "1,00", "abc", "--1", "1.-2",
        ] {
            assert!(Money::parse(bad, Currency::USD).is_err(), "{bad:?}");
        }
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("U$D").is_err());
    }

    #[test]
    fn json_never_takes_floats() {
        let m: Money = serde_json::from_str(r#"{"amount":"299.00","currency":"USD"}"#).unwrap();
        assert_eq!(m, usd(29900));
        let m: Money = serde_json::from_str(r#"{"minor":29900,"currency":"usd"}"#).unwrap();
        assert_eq!(m, usd(29900));
        assert!(serde_json::from_str::<Money>(r#"{"minor":299.5,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":299.5,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"currency":"USD"}"#).is_err());
        let json = serde_json::to_value(usd(29900)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"minor": 29900, "currency": "USD", "amount": "299.00"})
        );
    }

    #[test]
    fn proration_rounds_half_away_from_zero() {
        assert_eq!(usd(29900).prorate(1, 2).unwrap(), usd(14950));
        assert_eq!(usd(99).prorate(1, 2).unwrap(), usd(50)); // 49.5 -> 50
        assert_eq!(usd(-99).prorate(1, 2).unwrap(), usd(-50));
        assert_eq!(usd(100).prorate(1, 3).unwrap(), usd(33));
        assert_eq!(usd(100).prorate(2, 3).unwrap(), usd(67));
        assert!(usd(100).prorate(1, 0).is_err());
    }

    proptest! {
        #[test]
        fn amounts_round_trip(minor in -10_000_000_000i64..10_000_000_000i64,
                              code in prop::sample::select(vec!["USD", "JPY", "KWD", "IDR"])) {
            let currency = Currency::parse(code).unwrap();
            let m = Money::new(minor, currency);
            prop_assert_eq!(Money::parse(&m.amount(), currency).unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        }

        #[test]
        fn proration_of_a_whole_is_the_whole(minor in 0i64..1_000_000_000, d in 1i64..10_000_000_000) {
            prop_assert_eq!(usd(minor).prorate(d, d).unwrap(), usd(minor));
            prop_assert_eq!(usd(minor).prorate(0, d).unwrap(), usd(0));
        }

        #[test]
        fn proration_is_within_half_a_minor_unit(minor in 0i64..1_000_000_000, n in 0i64..1_000_000, extra in 0i64..1_000_000) {
            let d = n + extra + 1;
            let got = usd(minor).prorate(n, d).unwrap().minor as i128;
            let exact_times_d = minor as i128 * n as i128;
            // |got - exact| <= 1/2  <=>  |got*d - minor*n| * 2 <= d
            prop_assert!((got * d as i128 - exact_times_d).abs() * 2 <= d as i128);
        }
    }
}
