fn main() {
    pup::probe::main::<pup::probe::http::Http>()
}
