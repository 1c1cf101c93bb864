//! Exact noise for differential privacy: the discrete Laplace and the discrete Gaussian.
//!
//! Both samplers follow Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
//! Privacy" (NeurIPS 2020, arXiv:2004.00010): Algorithm 1 (Bernoulli(exp(−γ)) for a rational γ),
//! Algorithm 2 (discrete Laplace with a rational scale) and Algorithm 3 (discrete Gaussian with a
//! rational σ², by rejection from a discrete Laplace). Every step is integer arithmetic on
//! [`BigUint`]s: uniform integers below n by rejection from random bits of the caller's RNG,
//! Bernoulli(a/b) as "a uniform integer below b is < a". No floating point is used once a scale
//! is built, and the scale itself is built from the f64 parameter without rounding: a finite
//! f64 is exactly m·2^e, so t = Δ/ε = Δ·2^−e/m is an exact rational.
//!
//! # Why not OpenDP
//! OpenDP's Rust crate (`opendp` 0.16) has the same CKS samplers
//! (`opendp::traits::samplers::sample_discrete_laplace` and `sample_discrete_gaussian`, over
//! `dashu::RBig`) and builds here with `default-features = false` and no feature at all (about
//! 85 CPU-seconds cold: rand 0.7, statrs 0.13 with nalgebra 0.19, num 0.3, dashu, bitvec and
//! two proc-macro crates). But its samplers take no RNG: they draw from a global `fill_bytes`,
//! which is OpenSSL's `RAND_priv_bytes` with the `use-openssl` feature (a vendored OpenSSL built
//! from C source) and otherwise rand 0.7's `thread_rng`, which OpenDP itself documents as not
//! secure. A run could not be reproduced from a seed in tests, nor use the runtime's RNG. The
//! algorithms are a page of the paper, so they are written here against `num-bigint` (already
//! in the workspace's dependency graph).
//!
//! # Randomness
//! The samplers take any [`RngCore`]. Releases must use a CSPRNG seeded from the OS
//! (`rand::rngs::StdRng::from_os_rng()`, ChaCha12); tests seed `StdRng` for reproducible runs.
//! The running time depends on the value drawn (as in any rejection sampler); it is
//! microseconds, far below the whole seconds the operator is shown.
//!
//! # Range of the result
//! The results are `i128`. A discrete Laplace or Gaussian is unbounded, so each sampler draws
//! from its distribution *conditioned on |x| ≤ i128::MAX* (a draw outside is rejected and drawn
//! again; it is never clamped). For the accepted scales (t ≤ 2^100, σ ≤ 2^100) the rejected
//! mass is P(|X| ≥ 2^127) ≤ 2·exp(−2^127/2^100) = 2·exp(−2^27) for the Laplace and smaller still
//! for the Gaussian: the conditioned distribution is the exact one for every purpose, and
//! `-x` never overflows.

use std::fmt;

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};
use rand::RngCore;

/// The smallest discrete Laplace scale accepted: t ≥ 2^−20 (below it the noise is 0 with
/// probability 1 − 2·exp(−2^20), and such a scale is a calibration mistake).
pub const LAPLACE_MIN_LOG2: i32 = -20;
/// The largest discrete Laplace scale accepted: t ≤ 2^100 (so noise fits `i128` with all but
/// 2·exp(−2^27) of its mass, see the module doc).
pub const LAPLACE_MAX_LOG2: i32 = 100;
/// The smallest discrete Gaussian variance parameter accepted: σ² ≥ 2^−40.
pub const GAUSSIAN_MIN_LOG2: i32 = -40;
/// The largest discrete Gaussian variance parameter accepted: σ² ≤ 2^200 (σ ≤ 2^100).
pub const GAUSSIAN_MAX_LOG2: i32 = 200;

/// A positive rational num/den in lowest terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ratio {
    num: BigUint,
    den: BigUint,
}

impl Ratio {
    /// `num / den` reduced; `den` must not be zero.
    fn new(num: BigUint, den: BigUint) -> Ratio {
        let g = num.gcd(&den);
        Ratio {
            num: num / &g,
            den: den / g,
        }
    }

    /// `n / x` exactly, for the dyadic x = m·2^e.
    fn over_dyadic(n: BigUint, (m, e): (u64, i32)) -> Ratio {
        let m = BigUint::from(m);
        let shift = e.unsigned_abs() as usize;
        if e >= 0 {
            Ratio::new(n, m << shift)
        } else {
            Ratio::new(n << shift, m)
        }
    }

    /// Whether 2^lo ≤ self ≤ 2^hi (lo ≤ 0 ≤ hi).
    fn within(&self, lo: i32, hi: i32) -> bool {
        let lo = lo.unsigned_abs() as usize;
        let hi = hi.unsigned_abs() as usize;
        (&self.num << lo) >= self.den && self.num <= (&self.den << hi)
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == BigUint::from(1u8) {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// The exact value of a finite f64 x > 0 as (m, e) with x = m·2^e and m odd; `None` for
/// anything else (zero, negative, NaN, infinite).
fn dyadic(x: f64) -> Option<(u64, i32)> {
    if !(x.is_finite() && x > 0.0) {
        return None;
    }
    let bits = x.to_bits();
    // x > 0, so the sign bit is clear: bits = biased exponent (11 bits) · fraction (52 bits).
    let biased = i32::try_from(bits >> 52).ok()?;
    let fraction = bits & ((1 << 52) - 1);
    let (m, e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    let zeros = m.trailing_zeros();
    Some((m >> zeros, e + zeros as i32))
}

/// An exact discrete Laplace scale t = Δ/ε, checked: only scales the sampler handles exactly,
/// 2^[`LAPLACE_MIN_LOG2`] ≤ t ≤ 2^[`LAPLACE_MAX_LOG2`], can be built.
///
/// Adding [`discrete_laplace`] noise of scale Δ/ε to an integer query of L1 sensitivity Δ is
/// ε-DP (the geometric mechanism of Ghosh, Roughgarden and Sundararajan 2009).
/// To split ε equally over n queries, build each scale with sensitivity n·Δ: t = nΔ/ε exactly,
/// where ε/n in f64 would be rounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    t: Ratio,
}

impl Scale {
    /// t = sensitivity / epsilon, epsilon taken exactly from its f64 bits.
    ///
    /// Err(reason) when epsilon is not finite and > 0, when the sensitivity is 0, or when t is
    /// outside [2^−20, 2^100].
    pub fn laplace(sensitivity: u128, epsilon: f64) -> Result<Scale, String> {
        let eps = dyadic(epsilon)
            .ok_or_else(|| format!("epsilon must be a finite number > 0, not {epsilon}"))?;
        if sensitivity == 0 {
            return Err("the sensitivity must be at least 1".into());
        }
        let t = Ratio::over_dyadic(BigUint::from(sensitivity), eps);
        if !t.within(LAPLACE_MIN_LOG2, LAPLACE_MAX_LOG2) {
            return Err(format!(
                "the noise scale sensitivity/epsilon = {sensitivity}/{epsilon:e} is outside \
                 [2^{LAPLACE_MIN_LOG2}, 2^{LAPLACE_MAX_LOG2}], the range sampled exactly"
            ));
        }
        Ok(Scale { t })
    }
}

impl fmt::Display for Scale {
    /// The exact scale, as `num/den` in lowest terms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.t.fmt(f)
    }
}

/// An exact discrete Gaussian variance parameter σ², checked: only
/// 2^[`GAUSSIAN_MIN_LOG2`] ≤ σ² ≤ 2^[`GAUSSIAN_MAX_LOG2`] can be built.
///
/// A separate type from [`Scale`] so that a σ² cannot be passed to the Laplace sampler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variance {
    sigma2: Ratio,
}

impl Variance {
    /// σ² = sensitivity² / (2ρ), rho taken exactly from its f64 bits: adding
    /// [`discrete_gaussian`] noise with this σ² to an integer query of sensitivity Δ (L2, for
    /// a vector of independent draws) is ρ-zCDP (CKS20), which implies (ε, δ)-DP for
    /// every δ > 0 with ε = ρ + 2·sqrt(ρ·ln(1/δ)) (Bun and Steinke 2016).
    ///
    /// Err(reason) when rho is not finite and > 0, when the sensitivity is 0, or when σ² is
    /// outside [2^−40, 2^200].
    pub fn gaussian_zcdp(sensitivity: u128, rho: f64) -> Result<Variance, String> {
        let (m, e) =
            dyadic(rho).ok_or_else(|| format!("rho must be a finite number > 0, not {rho}"))?;
        if sensitivity == 0 {
            return Err("the sensitivity must be at least 1".into());
        }
        let delta = BigUint::from(sensitivity);
        // 2ρ = m·2^(e+1); e + 1 cannot overflow (e ≤ 971).
        let sigma2 = Ratio::over_dyadic(&delta * &delta, (m, e + 1));
        if !sigma2.within(GAUSSIAN_MIN_LOG2, GAUSSIAN_MAX_LOG2) {
            return Err(format!(
                "the noise variance sensitivity²/(2·rho) = {sensitivity}²/(2·{rho:e}) is outside \
                 [2^{GAUSSIAN_MIN_LOG2}, 2^{GAUSSIAN_MAX_LOG2}], the range sampled exactly"
            ));
        }
        Ok(Variance { sigma2 })
    }
}

impl fmt::Display for Variance {
    /// The exact σ², as `num/den` in lowest terms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sigma2.fmt(f)
    }
}

/// Draws discrete Laplace noise with scale `t`, exactly: P(x) ∝ exp(−|x|/t) for every integer
/// x, conditioned on |x| ≤ i128::MAX (see the module doc).
pub fn discrete_laplace(rng: &mut dyn RngCore, t: &Scale) -> i128 {
    laplace(rng, &t.t.num, &t.t.den)
}

/// Draws discrete Gaussian noise with variance parameter σ², exactly: P(x) ∝ exp(−x²/(2σ²)) for
/// every integer x, conditioned on |x| ≤ i128::MAX (see the module doc).
pub fn discrete_gaussian(rng: &mut dyn RngCore, s: &Variance) -> i128 {
    gaussian(rng, &s.sigma2)
}

/// A uniform integer in [0, n) for n ≥ 1: draws as many random bits as n − 1 has and retries
/// when the draw is ≥ n (each try succeeds with probability > 1/2).
fn uniform_below(rng: &mut dyn RngCore, n: &BigUint) -> BigUint {
    let bits = (n - 1u8).bits();
    if bits == 0 {
        return BigUint::zero();
    }
    if bits <= 64 {
        let mask = u64::MAX >> (64 - bits);
        loop {
            let x = BigUint::from(rng.next_u64() & mask);
            if &x < n {
                return x;
            }
        }
    }
    let len = bits.div_ceil(8) as usize;
    // The top (last, little-endian) byte keeps its low bits − 8·(len − 1) bits, 1 to 8.
    let mask = 0xffu8 >> (8 * len as u64 - bits);
    let mut buf = vec![0u8; len];
    loop {
        rng.fill_bytes(&mut buf);
        buf[len - 1] &= mask;
        let x = BigUint::from_bytes_le(&buf);
        if &x < n {
            return x;
        }
    }
}

/// A uniform integer in [0, n) for 1 ≤ n ≤ 2^64 − 1, as [`uniform_below`] without allocating.
fn uniform_below_u64(rng: &mut dyn RngCore, n: u64) -> u64 {
    if n == 1 {
        return 0;
    }
    let mask = u64::MAX >> (n - 1).leading_zeros();
    loop {
        let x = rng.next_u64() & mask;
        if x < n {
            return x;
        }
    }
}

/// Bernoulli(num/den) for 0 ≤ num ≤ den, den ≥ 1.
fn bernoulli(rng: &mut dyn RngCore, num: &BigUint, den: &BigUint) -> bool {
    uniform_below(rng, den) < *num
}

/// Bernoulli(exp(−num/den)) for 0 ≤ num ≤ den (CKS20 Algorithm 1, γ ∈ [0, 1]): the number K of
/// the first failing Bernoulli(γ/k), k = 1, 2, …, is odd with probability exp(−γ).
///
/// `k` counts loop iterations, each drawing random bits: it cannot reach 2^64 (and it passes k
/// only with probability γ^k/k!).
fn bernoulli_exp_unit(rng: &mut dyn RngCore, num: &BigUint, den: &BigUint) -> bool {
    let mut k: u64 = 1;
    while bernoulli(rng, num, &(den * k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−1)): Algorithm 1 with γ = 1, where Bernoulli(1/k) is "uniform below k is 0".
fn bernoulli_exp_one(rng: &mut dyn RngCore) -> bool {
    let mut k: u64 = 1;
    while uniform_below_u64(rng, k) == 0 {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−num/den)) for any num ≥ 0, den ≥ 1 (CKS20 Algorithm 1): ⌊γ⌋ independent
/// Bernoulli(exp(−1)) must all succeed, then Bernoulli(exp(−(γ − ⌊γ⌋))).
fn bernoulli_exp(rng: &mut dyn RngCore, num: &BigUint, den: &BigUint) -> bool {
    let (mut whole, rest) = num.div_rem(den);
    while !whole.is_zero() {
        if !bernoulli_exp_one(rng) {
            return false;
        }
        whole -= 1u8;
    }
    bernoulli_exp_unit(rng, &rest, den)
}

/// Discrete Laplace with scale num/den (CKS20 Algorithm 2, with the paper's t = num, s = den):
/// X = U + num·V is geometric with ratio exp(−1/num) when U is uniform below num kept with
/// probability exp(−U/num) and V counts successes of Bernoulli(exp(−1)); ⌊X/den⌋ is then
/// geometric with ratio exp(−den/num), and a random sign (rejecting −0) makes it two-sided.
fn laplace(rng: &mut dyn RngCore, num: &BigUint, den: &BigUint) -> i128 {
    loop {
        let u = uniform_below(rng, num);
        if !bernoulli_exp_unit(rng, &u, num) {
            continue;
        }
        // Counts loop iterations, each drawing random bits: it cannot reach 2^64.
        let mut v: u64 = 0;
        while bernoulli_exp_one(rng) {
            v += 1;
        }
        let y = (u + num * v) / den;
        let negative = rng.next_u32() & 1 == 1;
        if negative && y.is_zero() {
            continue;
        }
        // Conditioning on |x| ≤ i128::MAX (module doc): a larger draw is drawn again.
        let Some(y) = y.to_i128() else {
            continue;
        };
        return if negative { -y } else { y };
    }
}

/// Discrete Gaussian with variance parameter σ² = a/b (CKS20 Algorithm 3): a discrete Laplace
/// draw Y of integer scale t = ⌊σ⌋ + 1 is kept with probability
/// exp(−(|Y| − σ²/t)²/(2σ²)) = exp(−(|Y|·b·t − a)² / (2·a·b·t²)).
fn gaussian(rng: &mut dyn RngCore, sigma2: &Ratio) -> i128 {
    let (a, b) = (&sigma2.num, &sigma2.den);
    // ⌊σ⌋ = ⌊sqrt(⌊σ²⌋)⌋, as n² ≤ x < (n + 1)² iff n² ≤ ⌊x⌋ < (n + 1)² for integers n.
    let t = (a / b).sqrt() + 1u8;
    let one = BigUint::from(1u8);
    let den = BigUint::from(2u8) * a * b * &t * &t;
    loop {
        let y = laplace(rng, &t, &one);
        let scaled = BigUint::from(y.unsigned_abs()) * b * &t;
        let diff = if scaled >= *a { scaled - a } else { a - scaled };
        if bernoulli_exp(rng, &(&diff * &diff), &den) {
            return y;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn big(x: u128) -> BigUint {
        BigUint::from(x)
    }

    /// Sample mean and variance (about the true mean 0).
    fn moments(xs: &[i128]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    /// Checks that the empirical frequency of `hits` out of `n` is within 5 standard errors of
    /// probability `p`.
    fn assert_frequency(what: &str, hits: usize, n: usize, p: f64) {
        let freq = hits as f64 / n as f64;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (freq - p).abs() <= 5.0 * se + 1e-12,
            "{what}: frequency {freq} vs exact {p} (5 SE = {})",
            5.0 * se
        );
    }

    /// Checks mean ≈ 0 and variance ≈ `var` within 5 standard errors, given the distribution's
    /// fourth moment `m4`.
    fn assert_moments(what: &str, xs: &[i128], var: f64, m4: f64) {
        let n = xs.len() as f64;
        let (mean, sample_var) = moments(xs);
        let se_mean = (var / n).sqrt();
        assert!(
            mean.abs() <= 5.0 * se_mean,
            "{what}: mean {mean}, 5 SE = {}",
            5.0 * se_mean
        );
        let se_var = ((m4 - var * var) / n).sqrt();
        assert!(
            (sample_var - var).abs() <= 5.0 * se_var,
            "{what}: variance {sample_var} vs exact {var} (5 SE = {})",
            5.0 * se_var
        );
    }

    /// Exact discrete Laplace moments for scale t: p = exp(−1/t), Var = 2p/(1−p)²,
    /// E[X⁴] = 2p(1 + 11p + 11p² + p³)/((1 − p)⁴(1 + p)).
    fn laplace_moments(t: f64) -> (f64, f64) {
        let p = (-1.0 / t).exp();
        let q = -(-1.0 / t).exp_m1(); // 1 − p, accurate for huge t
        let var = 2.0 * p / (q * q);
        let m4 = 2.0 * p * (1.0 + 11.0 * p + 11.0 * p * p + p * p * p) / (q.powi(4) * (1.0 + p));
        (var, m4)
    }

    /// Draws `n` discrete Laplace samples with t = sensitivity/epsilon and checks mean, variance
    /// and the tails P(|X| ≥ k) = 2p^k/(1 + p) for each k in `ks`.
    fn check_laplace(sensitivity: u128, epsilon: f64, n: usize, ks: &[i128], seed: u64) {
        let t = sensitivity as f64 / epsilon;
        let scale = Scale::laplace(sensitivity, epsilon).unwrap();
        let mut rng = rng(seed);
        let xs: Vec<i128> = (0..n).map(|_| discrete_laplace(&mut rng, &scale)).collect();
        let (var, m4) = laplace_moments(t);
        assert_moments(&format!("laplace t = {t}"), &xs, var, m4);
        let p = (-1.0 / t).exp();
        for &k in ks {
            let hits = xs.iter().filter(|x| x.abs() >= k).count();
            let exact = 2.0 * (-(k as f64) / t).exp() / (1.0 + p);
            assert_frequency(&format!("laplace t = {t}, P(|X| ≥ {k})"), hits, n, exact);
        }
        // Symmetry: P(X > 0) = P(X < 0).
        let positive = xs.iter().filter(|&&x| x > 0).count();
        let nonzero = xs.iter().filter(|&&x| x != 0).count();
        assert_frequency(&format!("laplace t = {t}, sign"), positive, nonzero, 0.5);
    }

    #[test]
    fn dyadic_is_exact() {
        assert_eq!(dyadic(1.0), Some((1, 0)));
        assert_eq!(dyadic(10.0), Some((5, 1)));
        assert_eq!(dyadic(0.75), Some((3, -2)));
        // 0.1 is 3602879701896397 · 2^-55 exactly.
        assert_eq!(dyadic(0.1), Some((3_602_879_701_896_397, -55)));
        assert_eq!(dyadic(f64::MIN_POSITIVE / 4.0), Some((1, -1024)));
        assert_eq!(dyadic(f64::from_bits(1)), Some((1, -1074)));
        assert_eq!(dyadic(f64::MAX), Some(((1 << 53) - 1, 971)));
        for bad in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(dyadic(bad), None, "{bad}");
        }
    }

    #[test]
    fn scales_are_exact_rationals() {
        let t = Scale::laplace(37, 10.0).unwrap();
        assert_eq!(t.to_string(), "37/10");
        // ε = 0.1 is not 1/10: t = 2^55 / 3602879701896397, not 10.
        let t = Scale::laplace(1, 0.1).unwrap();
        assert_eq!(t.t, Ratio::new(big(1 << 55), big(3_602_879_701_896_397)));
        let t = Scale::laplace(1 << 80, 0.5).unwrap();
        assert_eq!(t.to_string(), (1u128 << 81).to_string());
        let s = Variance::gaussian_zcdp(3, 0.125).unwrap();
        assert_eq!(s.to_string(), "36");
        let s = Variance::gaussian_zcdp(1, 0.75).unwrap();
        assert_eq!(s.to_string(), "2/3");
    }

    #[test]
    fn scales_the_sampler_cannot_handle_are_refused() {
        for eps in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = Scale::laplace(1, eps).unwrap_err();
            assert!(err.contains("epsilon must be a finite number > 0"), "{err}");
            let err = Variance::gaussian_zcdp(1, eps).unwrap_err();
            assert!(err.contains("rho must be a finite number > 0"), "{err}");
        }
        let err = Scale::laplace(1, 1e-300).unwrap_err();
        assert!(err.contains("outside [2^-20, 2^100]"), "{err}");
        assert!(Scale::laplace(1 << 127, 10.0).is_err());
        assert!(Scale::laplace(u128::MAX, 10.0).is_err());
        assert!(Scale::laplace(1, f64::from_bits(1)).is_err());
        assert!(Scale::laplace(1, 1e300).is_err());
        assert!(Scale::laplace(1, f64::MAX).is_err());
        assert!(Scale::laplace(0, 1.0).is_err());
        assert!(Variance::gaussian_zcdp(1, 1e-300).is_err());
        assert!(Variance::gaussian_zcdp(1 << 127, 1.0).is_err());
        assert!(Variance::gaussian_zcdp(1, 1e300).is_err());
        assert!(Variance::gaussian_zcdp(0, 1.0).is_err());
        // The edges of the ranges are in.
        assert!(Scale::laplace(1, (2.0f64).powi(20)).is_ok());
        assert!(Scale::laplace(1, (2.0f64).powi(20) * (1.0 + f64::EPSILON)).is_err());
        assert!(Scale::laplace(1 << 100, 1.0).is_ok());
        assert!(Scale::laplace((1 << 100) + 1, 1.0).is_err());
        assert!(Variance::gaussian_zcdp(1 << 100, 0.5).is_ok());
        assert!(Variance::gaussian_zcdp((1 << 100) + 1, 0.5).is_err());
        assert!(Variance::gaussian_zcdp(1, (2.0f64).powi(39)).is_ok());
        assert!(Variance::gaussian_zcdp(1, (2.0f64).powi(40)).is_err());
    }

    #[test]
    fn uniform_below_is_uniform() {
        let mut rng = rng(1);
        for n in [1u128, 2, 3, 7, 1 << 64, (1 << 64) + 3, 3 << 100] {
            let n = big(n);
            let mut low = 0;
            let draws = 4000;
            for _ in 0..draws {
                let x = uniform_below(&mut rng, &n);
                assert!(x < n);
                if &x * 3u8 < n {
                    low += 1;
                }
            }
            if n > big(2) {
                let p = (n.to_f64().unwrap() / 3.0).ceil() / n.to_f64().unwrap();
                assert_frequency(&format!("uniform below {n}"), low, draws, p);
            }
        }
        for n in [1u64, 2, 5, u64::MAX] {
            assert!(uniform_below_u64(&mut rng, n) < n);
        }
    }

    #[test]
    fn bernoulli_exp_matches_exp() {
        let mut rng = rng(2);
        let n = 20_000;
        for (num, den) in [(0u128, 1u128), (1, 3), (9, 10), (1, 1), (5, 2), (7, 1)] {
            let hits = (0..n)
                .filter(|_| bernoulli_exp(&mut rng, &big(num), &big(den)))
                .count();
            let p = (-(num as f64) / den as f64).exp();
            assert_frequency(&format!("Bernoulli(exp(-{num}/{den}))"), hits, n, p);
        }
        let hits = (0..n).filter(|_| bernoulli_exp_one(&mut rng)).count();
        assert_frequency("Bernoulli(exp(-1))", hits, n, (-1.0f64).exp());
    }

    #[test]
    fn laplace_small_scales() {
        // t = 1/2, 1 and 37/10.
        check_laplace(1, 2.0, 20_000, &[1, 2], 10);
        check_laplace(1, 1.0, 20_000, &[1, 2, 4], 11);
        check_laplace(37, 10.0, 20_000, &[1, 4, 10], 12);
    }

    #[test]
    fn laplace_pmf_at_small_scale() {
        // t = 1: P(X = x) = (1 − p)/(1 + p) · p^|x|.
        let scale = Scale::laplace(1, 1.0).unwrap();
        let mut rng = rng(13);
        let n = 20_000;
        let xs: Vec<i128> = (0..n).map(|_| discrete_laplace(&mut rng, &scale)).collect();
        let p = (-1.0f64).exp();
        for x in -3..=3i128 {
            let hits = xs.iter().filter(|&&y| y == x).count();
            let exact = (1.0 - p) / (1.0 + p) * p.powi(x.abs() as i32);
            assert_frequency(&format!("P(X = {x})"), hits, n, exact);
        }
    }

    #[test]
    fn laplace_huge_scales() {
        check_laplace(1 << 40, 1.0, 5_000, &[1 << 39, 1 << 40, 1 << 42], 20);
        // t = 2^90 from sensitivity 2^80 and ε = 2^-10 (both exact).
        check_laplace(
            1 << 80,
            1.0 / 1024.0,
            5_000,
            &[1 << 89, 1 << 90, 1 << 92],
            21,
        );
        check_laplace(1 << 100, 1.0, 2_000, &[1 << 100], 22);
    }

    #[test]
    fn laplace_inexact_epsilon() {
        // t = 1/0.1 (slightly under 10, exactly as the f64 says).
        check_laplace(1, 0.1, 10_000, &[5, 10, 20], 23);
    }

    /// The discrete Gaussian pmf for σ² (x ≥ 0), normalised over |x| ≤ 60σ + 10, with its
    /// second and fourth moments.
    fn gaussian_pmf(sigma2: f64) -> (Vec<f64>, f64, f64) {
        let bound = (60.0 * sigma2.sqrt()) as i64 + 10;
        let w = |x: i64| (-((x * x) as f64) / (2.0 * sigma2)).exp();
        let z: f64 = (-bound..=bound).map(w).sum();
        let pmf: Vec<f64> = (0..=bound).map(|x| w(x) / z).collect();
        let moment = |k: i32| {
            (-bound..=bound)
                .map(|x| (x as f64).powi(k) * w(x) / z)
                .sum()
        };
        (pmf, moment(2), moment(4))
    }

    #[test]
    fn gaussian_small_sigma_matches_the_pmf() {
        // σ² = 1 (ρ = 1/2), 4 (ρ = 1/8) and 2/3 (ρ = 3/4).
        for (rho, sigma2, seed) in [(0.5, 1.0, 30), (0.125, 4.0, 31), (0.75, 2.0 / 3.0, 32)] {
            let s = Variance::gaussian_zcdp(1, rho).unwrap();
            let mut rng = rng(seed);
            let n = 20_000;
            let xs: Vec<i128> = (0..n).map(|_| discrete_gaussian(&mut rng, &s)).collect();
            let (pmf, var, m4) = gaussian_pmf(sigma2);
            for x in -4..=4i128 {
                let hits = xs.iter().filter(|&&y| y == x).count();
                let exact = pmf[x.unsigned_abs() as usize];
                assert_frequency(&format!("σ² = {sigma2}, P(X = {x})"), hits, n, exact);
            }
            // The ratio P(1)/P(0) = exp(−1/(2σ²)), from the counts.
            let zeros = xs.iter().filter(|&&y| y == 0).count() as f64;
            let ones = xs.iter().filter(|&&y| y.abs() == 1).count() as f64 / 2.0;
            let ratio = (-1.0 / (2.0 * sigma2)).exp();
            let se = ratio * (1.0 / zeros + 1.0 / ones).sqrt();
            assert!(
                (ones / zeros - ratio).abs() <= 5.0 * se,
                "σ² = {sigma2}: P(1)/P(0) = {} vs {ratio}",
                ones / zeros
            );
            assert_moments(&format!("gaussian σ² = {sigma2}"), &xs, var, m4);
        }
    }

    #[test]
    fn gaussian_huge_sigma() {
        // σ² = Δ²/(2ρ) with ρ = 1/2: σ = 2^20, 2^40 and 2^90 (variance σ², kurtosis 3).
        for (log2, n) in [(20, 5_000), (40, 5_000), (90, 3_000)] {
            let s = Variance::gaussian_zcdp(1 << log2, 0.5).unwrap();
            let mut rng = rng(40 + log2 as u64);
            let xs: Vec<i128> = (0..n).map(|_| discrete_gaussian(&mut rng, &s)).collect();
            let var = (2.0f64).powi(2 * log2);
            assert_moments(&format!("gaussian σ = 2^{log2}"), &xs, var, 3.0 * var * var);
            // P(|X| ≥ σ) ≈ 0.3173 for the normal (exact up to O(1/σ)).
            let sigma = 1i128 << log2;
            let hits = xs.iter().filter(|x| x.abs() >= sigma).count();
            assert_frequency(
                &format!("gaussian σ = 2^{log2}, tail"),
                hits,
                n,
                0.317_310_5,
            );
        }
    }

    #[test]
    fn seeded_runs_reproduce() {
        let t = Scale::laplace(1 << 60, 1.0).unwrap();
        let s = Variance::gaussian_zcdp(1000, 0.5).unwrap();
        let draw = |seed| {
            let mut rng = rng(seed);
            (0..200)
                .map(|_| {
                    (
                        discrete_laplace(&mut rng, &t),
                        discrete_gaussian(&mut rng, &s),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn throughput() {
        // Figures for the README; run with --nocapture to see them.
        let mut rng = rng(50);
        for (name, scale) in [
            ("laplace t = 10", Scale::laplace(10, 1.0).unwrap()),
            ("laplace t = 2^60", Scale::laplace(1 << 60, 1.0).unwrap()),
        ] {
            let n = 2_000;
            let start = Instant::now();
            let sum: i128 = (0..n).map(|_| discrete_laplace(&mut rng, &scale)).sum();
            let rate = n as f64 / start.elapsed().as_secs_f64();
            println!("{name}: {rate:.0} samples/s (sum {sum})");
        }
        for (name, s) in [
            ("gaussian σ = 10", Variance::gaussian_zcdp(10, 0.5).unwrap()),
            (
                "gaussian σ = 2^60",
                Variance::gaussian_zcdp(1 << 60, 0.5).unwrap(),
            ),
        ] {
            let n = 2_000;
            let start = Instant::now();
            let sum: i128 = (0..n).map(|_| discrete_gaussian(&mut rng, &s)).sum();
            let rate = n as f64 / start.elapsed().as_secs_f64();
            println!("{name}: {rate:.0} samples/s (sum {sum})");
        }
    }
}
