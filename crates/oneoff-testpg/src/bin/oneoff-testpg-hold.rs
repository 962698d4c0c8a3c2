//! Starts the shared cluster, prints its directory and server pid, and holds it until stdin
//! closes: the process the crate's tests kill to check that nothing outlives a killed test.

use oneoff_testpg::Postgres;

fn main() {
    let postgres = Postgres::shared();
    let pid = postgres.server_pid().expect("the shared cluster runs");
    println!("{} {pid}", postgres.directory().display());
    let _ = std::io::stdin().read_line(&mut String::new());
}
