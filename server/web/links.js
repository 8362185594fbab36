// The dashboard's own addresses (the router in app.js reads them back).

/** The page of session `id`. */
export function sessionLink(id) {
  return '#/sessions/' + encodeURIComponent(id);
}

/** The page of session `id` with the replay player at frame `frame`. */
export function frameLink(id, frame) {
  return sessionLink(id) + '?t=' + frame;
}
