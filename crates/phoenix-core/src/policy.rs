//! Image policy (design section 12, `policy.images`): the rules a golden image must meet
//! before Phoenix launches anything from it, the provider-neutral [`ImageInfo`] a
//! provider's image lookup returns, and [`evaluate`], the pure check of one image
//! against the rules at a given `now`. Also [`glob_match`], the one glob matcher for
//! image names, tag values and allowed-signer namespaces.

/// Match `text` against a glob: `*` matches any run of characters (also none), `?`
/// exactly one; everything else matches itself. Iterative with one backtrack point,
/// so hostile patterns cost O(pattern × text) at worst.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
