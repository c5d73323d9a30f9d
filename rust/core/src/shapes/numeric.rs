//! Postgres `numeric` values small enough for an `i128` mantissa, with Postgres's rules for the
//! display scale of results (`numeric_add`, `numeric_mul`, `select_div_scale`, `mod_var`).
//!
//! Numerics only arise in where clauses from decimal literals and arithmetic with them (no
//! electrified column is numeric), so 38 significant digits are plenty (with exponents up to
//! ±1000, trailing zeros not stored); a result that does not fit is an evaluation error
//! instead of a silently wrong value.

use std::cmp::Ordering;
use std::fmt;

use super::EvalError;

/// A finite decimal `mantissa * 10^-scale`. A non-negative `scale` is Postgres's display
/// scale; a negative one stands for trailing zeros of an integer (display scale 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    pub mantissa: i128,
    pub scale: i32,
}

/// The largest |scale| kept (Postgres's display scale limit).
const MAX_SCALE: i32 = 1000;

fn pow10(n: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(n).ok()?)
}

fn too_large() -> EvalError {
    EvalError::NumericTooLarge
}

impl Dec {
    pub fn from_int(i: i64) -> Dec {
        Dec {
            mantissa: i as i128,
            scale: 0,
        }
    }

    /// Parses Postgres's numeric input (`-12.50`, `1e3`, `.5`, surrounding spaces); `None` for
    /// anything else, including `NaN` and `Infinity`, and values beyond 38 digits.
    pub fn parse(s: &str) -> Option<Dec> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        let (neg, s) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (num, exp) = match s.find(['e', 'E']) {
            Some(i) => {
                let e = &s[i + 1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (&s[..i], e.parse::<i64>().ok()?)
            }
            None => (s, 0),
        };
        let (int, frac) = match num.find('.') {
            Some(i) => (&num[..i], &num[i + 1..]),
            None => (num, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        // value = mantissa * 10^(exp - frac.len()); display scale = max(0, frac.len() - exp).
        let scale = i32::try_from((frac.len() as i64).checked_sub(exp)?).ok()?;
        if scale.unsigned_abs() > MAX_SCALE.unsigned_abs() {
            return None;
        }
        // Small integers are kept with scale 0 (so 1e3 is 1000, as printed).
        let (mantissa, scale) = match pow10(-scale).and_then(|p| mantissa.checked_mul(p)) {
            Some(m) if scale < 0 => (m, 0),
            _ => (mantissa, scale),
        };
        Some(Dec {
            mantissa: if neg { -mantissa } else { mantissa },
            scale,
        })
    }

    /// The mantissa at a larger scale.
    fn rescaled(self, scale: i32) -> Result<i128, EvalError> {
        debug_assert!(scale >= self.scale);
        pow10(scale - self.scale)
            .and_then(|p| self.mantissa.checked_mul(p))
            .ok_or_else(too_large)
    }

    fn aligned(self, other: Dec) -> Result<(i128, i128, i32), EvalError> {
        let scale = self.scale.max(other.scale);
        Ok((self.rescaled(scale)?, other.rescaled(scale)?, scale))
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    pub fn neg(self) -> Dec {
        Dec {
            mantissa: -self.mantissa,
            ..self
        }
    }

    pub fn abs(self) -> Dec {
        Dec {
            mantissa: self.mantissa.abs(),
            ..self
        }
    }

    pub fn add(self, other: Dec) -> Result<Dec, EvalError> {
        let (a, b, scale) = self.aligned(other)?;
        Ok(Dec {
            mantissa: a.checked_add(b).ok_or_else(too_large)?,
            scale,
        })
    }

    pub fn sub(self, other: Dec) -> Result<Dec, EvalError> {
        self.add(other.neg())
    }

    /// The display scale (Postgres's `dscale`).
    fn dscale(self) -> i64 {
        self.scale.max(0) as i64
    }

    pub fn mul(self, other: Dec) -> Result<Dec, EvalError> {
        let scale = self.scale + other.scale;
        if scale.unsigned_abs() > MAX_SCALE.unsigned_abs() {
            return Err(too_large());
        }
        Ok(Dec {
            mantissa: self
                .mantissa
                .checked_mul(other.mantissa)
                .ok_or_else(too_large)?,
            scale,
        })
    }

    /// Postgres's view of a nonzero value in base 10000: the weight of its first nonzero digit
    /// and that digit (`select_div_scale` reads both).
    fn base10000_lead(self) -> (i64, i128) {
        let m = self.mantissa.unsigned_abs();
        if m == 0 {
            return (0, 0);
        }
        let digits = m.ilog10() as i64 + 1;
        let exp10 = digits - 1 - self.scale as i64;
        let weight = exp10.div_euclid(4);
        let k = self.scale as i64 + 4 * weight;
        let lead = if k >= 0 {
            m / 10u128.pow(k as u32)
        } else {
            m * 10u128.pow((-k) as u32)
        };
        (weight, lead as i128)
    }

    /// Division rounded (half away from zero) to the scale Postgres's `select_div_scale` picks.
    pub fn div(self, other: Dec) -> Result<Dec, EvalError> {
        if other.is_zero() {
            return Err(EvalError::DivisionByZero);
        }
        let (w1, d1) = self.base10000_lead();
        let (w2, d2) = other.base10000_lead();
        let mut qweight = w1 - w2;
        if d1 <= d2 {
            qweight -= 1;
        }
        let rscale = (16 - qweight * 4)
            .max(self.dscale())
            .max(other.dscale())
            .clamp(0, MAX_SCALE as i64) as i32;
        // q * 10^rscale = a.m * 10^(rscale + b.s - a.s) / b.m: scale whichever side the
        // exponent's sign asks for.
        let e = rscale + other.scale - self.scale;
        let (n, d) = if e >= 0 {
            (
                pow10(e).and_then(|p| self.mantissa.checked_mul(p)),
                Some(other.mantissa),
            )
        } else {
            (
                Some(self.mantissa),
                pow10(-e).and_then(|p| other.mantissa.checked_mul(p)),
            )
        };
        let (Some(n), Some(d)) = (n, d) else {
            return Err(too_large());
        };
        let mut q = n / d;
        let r = (n % d).unsigned_abs();
        if r >= d.unsigned_abs() - r {
            q += if (n < 0) == (d < 0) { 1 } else { -1 };
        }
        Ok(Dec {
            mantissa: q,
            scale: rscale,
        })
    }

    /// `a - trunc(a / b) * b`, at the larger of the two display scales.
    pub fn rem(self, other: Dec) -> Result<Dec, EvalError> {
        if other.is_zero() {
            return Err(EvalError::DivisionByZero);
        }
        let (a, b, scale) = self.aligned(other)?;
        Ok(Dec {
            mantissa: a % b,
            scale,
        })
    }

    /// Rounded half away from zero to an integer (Postgres's numeric to integer casts).
    pub fn round_to_int(self) -> Option<i128> {
        if self.scale < 0 {
            return self.mantissa.checked_mul(pow10(-self.scale)?);
        }
        let p = pow10(self.scale)?;
        let q = self.mantissa / p;
        let r = (self.mantissa % p).unsigned_abs();
        Some(if r >= p.unsigned_abs() - r && r != 0 {
            q + self.mantissa.signum()
        } else {
            q
        })
    }

    /// The nearest double, as Postgres's `numeric::float8` (via the decimal text).
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().expect("decimal text")
    }

    /// The nearest float4, rounded once (Postgres's `numeric::float4` parses the text).
    pub fn to_f32(self) -> f32 {
        self.to_string().parse().expect("decimal text")
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Dec) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dec {
    fn cmp(&self, other: &Dec) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescaled(scale), other.rescaled(scale)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            // Only the side scaled up can overflow, and then its magnitude is the larger.
            (Err(_), _) => self.mantissa.signum().cmp(&0),
            (_, Err(_)) => 0.cmp(&other.mantissa.signum()),
        }
    }
}

impl fmt::Display for Dec {
    /// Postgres's `numeric_out`: every digit of the display scale, no exponent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if self.scale <= 0 {
            let zeros = if self.mantissa == 0 {
                0
            } else {
                -self.scale as usize
            };
            return write!(f, "{sign}{digits}{}", "0".repeat(zeros));
        }
        let scale = self.scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn parse_and_print() {
        for (input, out) in [
            ("1.50", "1.50"),
            ("-0.001", "-0.001"),
            (".5", "0.5"),
            ("1e3", "1000"),
            ("1.50e1", "15.0"),
            ("15e-1", "1.5"),
            ("  7  ", "7"),
            ("+0.00", "0.00"),
            ("1e50", &format!("1{}", "0".repeat(50))),
            ("1.5e-60", &format!("0.{}15", "0".repeat(59))),
        ] {
            assert_eq!(d(input).to_string(), out, "{input}");
        }
        for bad in [
            "", ".", "1.2.3", "NaN", "Infinity", "1e", "--1", "1e+", "1_000",
        ] {
            assert_eq!(Dec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn arithmetic_scales_follow_postgres() {
        assert_eq!(d("2.50").mul(d("1.5")).unwrap().to_string(), "3.750");
        assert_eq!(d("1.50").add(Dec::from_int(1)).unwrap().to_string(), "2.50");
        assert_eq!(
            Dec::from_int(1).div(d("3.0")).unwrap().to_string(),
            "0.33333333333333333333"
        );
        assert_eq!(
            Dec::from_int(2).div(d("3.0")).unwrap().to_string(),
            "0.66666666666666666667"
        );
        assert_eq!(
            d("1.0").div(Dec::from_int(7000000)).unwrap().to_string(),
            "0.000000142857142857142857"
        );
        assert_eq!(d("1.0").rem(d("0.3")).unwrap().to_string(), "0.1");
        assert_eq!(d("-7.5").rem(Dec::from_int(2)).unwrap().to_string(), "-1.5");
        assert_eq!(
            Dec::from_int(1).div(Dec::from_int(0)),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            Dec::from_int(3).div(d("1e50")).unwrap().to_string(),
            format!("0.{}3{}", "0".repeat(49), "0".repeat(18))
        );
        assert_eq!(
            d("1e50").div(d("2e49")).unwrap().to_string(),
            "5.0000000000000000"
        );
    }

    #[test]
    fn compare_and_round() {
        assert_eq!(d("1.5").cmp(&d("1.50")), Ordering::Equal);
        assert_eq!(d("-1").cmp(&d("0.5")), Ordering::Less);
        let huge = Dec {
            mantissa: i128::MAX / 10,
            scale: 0,
        };
        assert_eq!(huge.cmp(&d("0.1")), Ordering::Greater);
        assert_eq!(huge.neg().cmp(&d("0.1")), Ordering::Less);
        assert_eq!(d("6.5").round_to_int(), Some(7));
        assert_eq!(d("-6.5").round_to_int(), Some(-7));
        assert_eq!(d("6.49").round_to_int(), Some(6));
        assert_eq!(d("0.1").to_f64(), 0.1);
        assert_eq!(d("1e308").to_f64(), 1e308);
        assert_eq!(d("1e50").cmp(&d("99999999999999999999")), Ordering::Greater);
        assert_eq!(d("-1e50").cmp(&Dec::from_int(-5)), Ordering::Less);
    }
}
