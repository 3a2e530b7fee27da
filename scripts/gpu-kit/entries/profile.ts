// The kit's bench:profile: bench/profile.ts with Dawn registered and `--methods all` expanded first.
import './dawn.js';
import './all-methods.js';
import '../../../bench/profile.js';
