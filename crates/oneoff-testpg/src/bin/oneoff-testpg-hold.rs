//! Starts the shared cluster and holds it until stdin closes. Without arguments it prints the
//! cluster's directory and server pid: the process the crate's tests kill to check that
//! nothing outlives a killed test. With `--url` it prints the URL of a new database instead:
//! how the browser tests (JavaScript) get a real PostgreSQL.

use oneoff_testpg::Postgres;

fn main() {
    let postgres = Postgres::shared();
    if std::env::args().nth(1).as_deref() == Some("--url") {
        println!("{}", postgres.new_database());
    } else {
        let pid = postgres.server_pid().expect("the shared cluster runs");
        println!("{} {pid}", postgres.directory().display());
    }
    let _ = std::io::stdin().read_line(&mut String::new());
}
