// The kit's bench:compare: bench/compare.ts with Dawn registered and `--methods all` expanded first.
import './dawn.js';
import './all-methods.js';
import '../../../bench/compare.js';
