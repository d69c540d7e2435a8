//! Integration tests: the real server over real TLS, on SQLite and PostgreSQL.
//!
//! Every case listed with `BOTH` runs once per backend. Without `TEST_POSTGRES_URL`, the
//! PostgreSQL runs report "ignored" with the reason; with it, they must pass.

mod admin;
mod as_storage;
mod behind;
mod cli;
mod conformance;
mod container;
mod crl_integrity;
mod events;
mod faults;
mod fixtures;
mod lifecycle;
mod limits;
mod registration;
mod reload;
mod revocation;
mod server;
mod storage;
mod support;
mod test_as;
mod versions;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use support::{Backend, Case, POSTGRES_ENV};

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(server::cases());
    all.extend(cli::cases());
    all.extend(storage::cases());
    all.extend(as_storage::cases());
    all.extend(registration::cases());
    all.extend(lifecycle::cases());
    all.extend(limits::cases());
    all.extend(reload::cases());
    all.extend(conformance::cases());
    all.extend(faults::cases());
    all.extend(versions::cases());
    all.extend(revocation::cases());
    all.extend(crl_integrity::cases());
    all.extend(events::cases());
    all.extend(admin::cases());
    all.extend(container::cases());
    all.extend(test_as::cases());
    all.extend(behind::cases());
    all
}

fn main() {
    let args = Arguments::from_args();
    let postgres = std::env::var(POSTGRES_ENV).is_ok_and(|u| !u.is_empty());
    if postgres && !args.list {
        support::drop_old_schemas();
    }
    let mut trials = Vec::new();
    for case in cases() {
        for &backend in case.backends {
            let run = case.run;
            let name = format!("{}::{}", case.name, backend.name());
            trials.push(Trial::ignorable_test(name, move || {
                if backend == Backend::Postgres && !postgres {
                    return Ok(Completion::ignored_with(format!(
                        "skipped: {POSTGRES_ENV} is unset"
                    )));
                }
                let rt = support::runtime();
                match rt.block_on(run(backend)) {
                    Ok(()) => Ok(Completion::Completed),
                    Err(e) if e.downcast_ref::<support::Skip>().is_some() => {
                        Ok(Completion::ignored_with(format!("skipped: {e}")))
                    }
                    Err(e) => Err(Failed::from(format!("{e:#}"))),
                }
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
