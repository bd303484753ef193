/**
 * Names of the files in a state directory that both sides read: the server writes them and the CLI
 * reads them. They live here, apart from the server's code, so that reading one costs the CLI no
 * more than this module.
 */

/** The operator's bearer token (mode 0600), written by the first `up` or `serve` of a state. */
export const OPERATOR_TOKEN_FILE = 'operator.token';
