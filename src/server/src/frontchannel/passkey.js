// fapi-as passkeys (WebAuthn): served as /assets/passkey.js, the only script of the pages
// (CSP script-src 'self'; connect-src 'self'). See src/frontchannel/passkey.rs and src/webauthn.rs.
//
// Each <form data-passkey="get|create" data-options="/..."> gets the ceremony options from its
// data-options URL (POST with the form's csrf), runs navigator.credentials.get or .create, puts the
// credential (JSON, base64url fields) in the form's hidden "credential" field and submits the form.
'use strict';
(() => {
  const b64u = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  const bytes = (s) => {
    let t = s.replace(/-/g, '+').replace(/_/g, '/');
    while (t.length % 4) t += '=';
    return Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
  };
  const ids = (list) => (list || []).map((c) => ({ ...c, id: bytes(c.id) }));

  async function options(form) {
    const r = await fetch(form.dataset.options, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: form.elements.csrf.value }),
    });
    if (!r.ok) throw new Error('options: HTTP ' + r.status);
    return r.json();
  }

  async function signIn(form) {
    const o = await options(form);
    const cred = await navigator.credentials.get({
      publicKey: { ...o, challenge: bytes(o.challenge), allowCredentials: ids(o.allowCredentials) },
    });
    const r = cred.response;
    return {
      id: cred.id,
      rawId: b64u(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: b64u(r.clientDataJSON),
        authenticatorData: b64u(r.authenticatorData),
        signature: b64u(r.signature),
        userHandle: r.userHandle ? b64u(r.userHandle) : null,
      },
    };
  }

  async function register(form) {
    const o = await options(form);
    const cred = await navigator.credentials.create({
      publicKey: {
        ...o,
        challenge: bytes(o.challenge),
        user: { ...o.user, id: bytes(o.user.id) },
        excludeCredentials: ids(o.excludeCredentials),
      },
    });
    const r = cred.response;
    return {
      id: cred.id,
      rawId: b64u(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: b64u(r.clientDataJSON),
        attestationObject: b64u(r.attestationObject),
        transports: typeof r.getTransports === 'function' ? r.getTransports() : [],
      },
    };
  }

  function fail(form, err) {
    const box = form.querySelector('[data-testid="passkey-error"]');
    if (box) {
      box.textContent = box.dataset.message + (err && err.name ? ' (' + err.name + ')' : '');
      box.hidden = false;
    }
    const button = form.querySelector('button');
    if (button) button.disabled = false;
  }

  for (const form of document.querySelectorAll('form[data-passkey]')) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const button = form.querySelector('button');
      if (button) button.disabled = true;
      if (!window.PublicKeyCredential || !navigator.credentials) {
        fail(form, { name: 'NotSupportedError' });
        return;
      }
      (form.dataset.passkey === 'create' ? register(form) : signIn(form))
        .then((credential) => {
          form.elements.credential.value = JSON.stringify(credential);
          form.submit();
        })
        .catch((err) => fail(form, err));
    });
  }
})();
