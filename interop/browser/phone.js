// Browser phone for the siplink end-to-end test.
//
// The page does nothing by itself: the test calls
//   window.siplinkStart({ wsUrl, uri, password, authorizationUser, debug })
//   window.siplinkCall(targetUri)
//   window.siplinkDropConnection()   (the WebSocket closes under the call)
// and reads window.siplinkState. Every transition is appended to
// siplinkState.events and, when the test has exposed it, pushed to
// window.siplinkReport(event).
(function () {
  'use strict';

  const state = {
    registration: 'idle', // idle | connecting | connected | registered | unregistered | failed | disconnected
    call: 'idle', // idle | calling | progress | accepted | confirmed | ended | failed
    end: null, // { how: 'ended'|'failed', originator, cause, method, statusCode }
    media: null, // peer connection facts once the answer is applied
    error: null,
    events: [],
  };
  window.siplinkState = state;

  const logEl = document.getElementById('log');

  function record(kind, detail) {
    const event = { t: Math.round(performance.now()), kind, detail: detail || {} };
    state.events.push(event);
    if (logEl) logEl.textContent += `${event.t} ms ${kind} ${JSON.stringify(event.detail)}\n`;
    if (typeof window.siplinkReport === 'function') {
      try {
        window.siplinkReport(event);
      } catch (_) {
        // the test harness is optional
      }
    }
  }

  function messageFacts(message) {
    if (!message) return {};
    return {
      method: message.method || null,
      statusCode: message.status_code || null,
      reason: message.reason_phrase || null,
    };
  }

  let ua = null;
  let session = null;

  window.siplinkStart = function (cfg) {
    if (ua) throw new Error('siplinkStart called twice');
    if (cfg.debug) JsSIP.debug.enable('JsSIP:*');
    else JsSIP.debug.disable();

    const socket = new JsSIP.WebSocketInterface(cfg.wsUrl);
    ua = new JsSIP.UA({
      sockets: [socket],
      uri: cfg.uri,
      password: cfg.password,
      authorization_user: cfg.authorizationUser || undefined,
      display_name: cfg.displayName || 'siplink browser phone',
      register: true,
      register_expires: 600,
      session_timers: false,
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 4,
      user_agent: `JsSIP ${JsSIP.version} (siplink interop test)`,
    });

    ua.on('connecting', () => {
      state.registration = 'connecting';
      record('ws:connecting', { url: cfg.wsUrl });
    });
    ua.on('connected', () => {
      if (state.registration === 'connecting') state.registration = 'connected';
      record('ws:connected', {});
    });
    ua.on('disconnected', (e) => {
      if (state.registration !== 'registered') state.registration = 'disconnected';
      record('ws:disconnected', { error: Boolean(e && e.error), code: e && e.code, reason: e && e.reason });
    });
    ua.on('registered', (e) => {
      state.registration = 'registered';
      record('registration:registered', messageFacts(e.response));
    });
    ua.on('unregistered', (e) => {
      state.registration = 'unregistered';
      record('registration:unregistered', { ...messageFacts(e.response), cause: e.cause || null });
    });
    ua.on('registrationFailed', (e) => {
      state.registration = 'failed';
      state.error = `registration failed: ${e.cause}`;
      record('registration:failed', { ...messageFacts(e.response), cause: e.cause || null });
    });
    ua.start();
  };

  window.siplinkCall = function (target) {
    if (!ua) throw new Error('siplinkStart first');
    if (session) throw new Error('one call at a time');
    state.call = 'calling';
    record('call:calling', { target });

    session = ua.call(target, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
      eventHandlers: {
        // emitted inside ua.call(), before it returns the session
        peerconnection: (e) => {
          record('call:peerconnection', {});
          e.peerconnection.addEventListener('iceconnectionstatechange', () =>
            record('ice:state', { state: e.peerconnection.iceConnectionState }),
          );
        },
      },
    });
    session.on('sending', (e) => {
      record('call:invite-sent', { sdpBytes: (e.request.body || '').length });
    });
    session.on('progress', (e) => {
      state.call = 'progress';
      record('call:progress', messageFacts(e.response));
    });
    session.on('accepted', (e) => {
      state.call = 'accepted';
      record('call:accepted', messageFacts(e.response));
    });
    session.on('confirmed', () => {
      state.call = 'confirmed';
      const pc = session.connection;
      const remote = pc && pc.remoteDescription;
      state.media = {
        signalingState: pc ? pc.signalingState : null,
        remoteType: remote ? remote.type : null,
        remoteHasFingerprint: Boolean(remote && /a=fingerprint:/.test(remote.sdp)),
        remoteHasIce: Boolean(remote && /a=ice-ufrag:/.test(remote.sdp) && /a=ice-pwd:/.test(remote.sdp)),
        transceivers: pc ? pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.currentDirection })) : [],
      };
      record('call:confirmed', state.media);
    });
    session.on('peerconnection:setremotedescriptionfailed', (err) => {
      state.error = `setRemoteDescription failed: ${err && (err.message || err)}`;
      record('call:setremotedescriptionfailed', { error: String(err && (err.message || err)) });
    });
    session.on('getusermediafailed', (err) => {
      state.error = `getUserMedia failed: ${err && (err.message || err)}`;
      record('call:getusermediafailed', { error: String(err && (err.message || err)) });
    });
    session.on('ended', (e) => {
      state.call = 'ended';
      state.end = { how: 'ended', originator: e.originator, cause: e.cause, ...messageFacts(e.message) };
      record('call:ended', state.end);
    });
    session.on('failed', (e) => {
      state.call = 'failed';
      state.end = { how: 'failed', originator: e.originator, cause: e.cause, ...messageFacts(e.message) };
      state.error = state.error || `call failed: ${e.cause}`;
      record('call:failed', state.end);
    });
  };

  window.siplinkStop = function () {
    if (ua) ua.stop();
  };

  // Closes the WebSocket under the call, as a closed tab or a lost network
  // would: no BYE, no un-REGISTER; JsSIP does not reconnect after it.
  window.siplinkDropConnection = function () {
    if (ua) ua._transport.disconnect();
  };

  record('page:ready', { jssip: JsSIP.version });
})();
