//! Writes the TEST-ONLY primes and aux info kept under `party-core/test-data/`.
//!
//! ```text
//! cargo run --release -p party-core --example gen_test_data -- [--parties 5] [--out party-core/test-data]
//! ```
//! Generates four safe primes per party (on all cores), then runs the real aux
//! info protocol for the groups of 2, 3 and 5 parties. Tests load these files
//! so they do not spend minutes on primes; production code never reads them.

use std::time::Instant;

use party_core::driver::{self, StageDriver, StageOutput};
use party_core::primes::PrimeSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let parties: usize = arg("--parties")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(5);
    let out = arg("--out").unwrap_or_else(|| "party-core/test-data".into());
    std::fs::create_dir_all(&out)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    eprintln!(
        "backend {}: generating {} safe primes on {threads} threads",
        party_core::BACKEND,
        parties * 4
    );
    let started = Instant::now();
    let mut sets = Vec::new();
    let mut encoded = Vec::new();
    for party in 0..parties {
        let set = PrimeSet::generate_parallel(threads, |done| {
            eprintln!(
                "  party {party}: prime {done}/4 after {:.0?}",
                started.elapsed()
            );
        })?;
        encoded.push(hex::encode(set.to_bytes()?.as_slice()));
        sets.push(set);
    }
    std::fs::write(
        format!("{out}/primes.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "warning": "TEST ONLY. Public test primes; never use them for a real key.",
            "parties": encoded,
        }))?,
    )?;
    eprintln!("primes written after {:.0?}", started.elapsed());

    for n in [2usize, 3, 5].into_iter().filter(|n| *n <= parties) {
        let t0 = Instant::now();
        let eid: [u8; 32] = rand_core::RngCore::next_u64(&mut rand_core::OsRng)
            .to_be_bytes()
            .repeat(4)
            .try_into()
            .map_err(|_| "eid")?;
        let drivers: Vec<Box<dyn StageDriver>> = (0..n)
            .map(|i| driver::aux_info(&eid, i as u16, n as u16, sets[i].clone()))
            .collect();
        let outputs = run_all(drivers)?;
        let aux: Vec<String> = outputs
            .into_iter()
            .map(|o| match o {
                StageOutput::AuxInfo(a) => Ok(hex::encode(party_core::codec::encode(&*a)?)),
                _ => Err("unexpected output".into()),
            })
            .collect::<Result<_, Box<dyn std::error::Error>>>()?;
        std::fs::write(
            format!("{out}/aux-n{n}.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "warning": "TEST ONLY. Aux info made from the public test primes.",
                "aux": aux,
            }))?,
        )?;
        eprintln!("aux info for n={n} after {:.0?}", t0.elapsed());
    }
    Ok(())
}

/// Runs drivers to completion in memory, each party's computation on its own thread.
fn run_all(
    mut drivers: Vec<Box<dyn StageDriver>>,
) -> Result<Vec<StageOutput>, Box<dyn std::error::Error>> {
    let n = drivers.len();
    let mut outputs: Vec<Option<StageOutput>> = (0..n).map(|_| None).collect();
    loop {
        let steps: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = drivers
                .iter_mut()
                .zip(outputs.iter())
                .map(|(d, o)| s.spawn(move || if o.is_none() { Some(d.run()) } else { None }))
                .collect();
            hs.into_iter().map(|h| h.join().ok().flatten()).collect()
        });
        let mut sent = false;
        for (from, step) in steps.into_iter().enumerate() {
            let Some(step) = step else { continue };
            let step = step?;
            for m in step.outgoing {
                sent = true;
                for (to, d) in drivers.iter_mut().enumerate() {
                    if to != from && m.recipient.is_none_or(|r| usize::from(r) == to) {
                        d.handle(from as u16, m.recipient.is_none(), &m.payload)?;
                    }
                }
            }
            if let Some(o) = step.output {
                outputs[from] = Some(o);
            }
        }
        if outputs.iter().all(Option::is_some) {
            return Ok(outputs.into_iter().flatten().collect());
        }
        if !sent {
            return Err("protocol stalled".into());
        }
    }
}
