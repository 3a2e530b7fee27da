// The kit's bench: bench/run.ts with Dawn registered first (the peers come with it, bundled).
import './dawn.js';
import '../../../bench/run.js';
