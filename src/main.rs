fn main() {
    println!("wacrm");
}
