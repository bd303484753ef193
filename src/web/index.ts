/** The web dashboard's face for the rest of the system: the client routes the server must answer. */
export { CLIENT_ROUTES } from './lib/routes.ts';
