// signalbus console: enhancements only — every form works without this file.
// Text from the server is set with textContent, never parsed as HTML.
'use strict';

function startTail(section) {
  var button = document.getElementById('tail-toggle');
  var list = document.getElementById('tail-list');
  var state = document.getElementById('tail-state');
  var org = section.getAttribute('data-org');
  var source = null;
  button.addEventListener('click', function () {
    if (source) {
      source.close();
      source = null;
      button.textContent = 'Start live tail';
      button.setAttribute('aria-pressed', 'false');
      state.textContent = 'stopped';
      return;
    }
    source = new EventSource(section.getAttribute('data-stream'));
    button.textContent = 'Stop live tail';
    button.setAttribute('aria-pressed', 'true');
    state.textContent = 'connecting…';
    source.addEventListener('open', function () { state.textContent = 'live'; });
    source.addEventListener('error', function () { state.textContent = 'reconnecting…'; });
    source.addEventListener('signal', function (event) {
      var signal;
      try { signal = JSON.parse(event.data); } catch (error) { return; }
      var item = document.createElement('li');
      item.className = 'tail-signal';
      var link = document.createElement('a');
      link.href = '/console/orgs/' + encodeURIComponent(org) + '/signals/' + encodeURIComponent(signal.id);
      link.textContent = signal.type;
      item.appendChild(link);
      item.appendChild(document.createTextNode(' ' + (signal.subject || '') + ' · ' + signal.recorded_at));
      list.insertBefore(item, list.firstChild);
      while (list.children.length > 200) list.removeChild(list.lastChild);
    });
  });
}

// Approval countdowns; at zero the text says expired and the decide form is
// disabled: the server refuses a decision past the window anyway.
function tickCountdowns() {
  var items = document.querySelectorAll('[data-expires]');
  for (var i = 0; i < items.length; i++) {
    var left = Date.parse(items[i].getAttribute('data-expires')) - Date.now();
    if (left <= 0) {
      items[i].textContent = 'expired';
      items[i].classList.add('expired');
      items[i].removeAttribute('data-expires');
      continue;
    }
    var s = Math.floor(left / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    items[i].textContent = 'expires in ' + (h ? h + ' h ' : '') + m + ' min ' + sec + ' s';
  }
  var forms = document.querySelectorAll('form[data-expiring]');
  for (var j = 0; j < forms.length; j++) {
    var form = forms[j];
    if (Date.parse(form.getAttribute('data-expiring')) > Date.now()) continue;
    form.removeAttribute('data-expiring');
    var controls = form.querySelectorAll('button, input:not([type=hidden])');
    for (var k = 0; k < controls.length; k++) controls[k].disabled = true;
    var note = document.createElement('p');
    note.className = 'expired-note';
    note.setAttribute('role', 'status');
    note.textContent = 'Expired: the approval window has closed; it can no longer be approved.';
    form.parentNode.insertBefore(note, form.nextSibling);
  }
}

// A queued or running replay's bar: polled until it finishes, then the page reloads with the report.
function pollProgress(bar) {
  var text = bar.parentNode.querySelector('.progress-text');
  var timer = setInterval(function () {
    fetch(bar.getAttribute('data-poll'), { credentials: 'same-origin' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) {
        if (!progress) return;
        bar.value = progress.percent;
        bar.textContent = progress.percent + ' %';
        if (text) text.textContent = progress.percent + ' % · ' + progress.processed + (progress.total !== null ? ' of ' + progress.total : '');
        if (progress.status !== 'queued' && progress.status !== 'running') {
          clearInterval(timer);
          window.location.reload();
        }
      })
      .catch(function () {});
  }, 1000);
}

// An installation whose job is running: polled until the job ends, then the page reloads with the outcome.
function pollInstallation(element) {
  var timer = setInterval(function () {
    fetch(element.getAttribute('data-installation-poll'), { credentials: 'same-origin' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state && !state.pending) {
          clearInterval(timer);
          window.location.reload();
        }
      })
      .catch(function () {});
  }, 1000);
}

document.addEventListener('DOMContentLoaded', function () {
  var installation = document.querySelector('[data-installation-poll]');
  if (installation) pollInstallation(installation);
  var bars = document.querySelectorAll('progress[data-poll]');
  for (var i = 0; i < bars.length; i++) pollProgress(bars[i]);
  var section = document.querySelector('section.tail[data-stream]');
  if (section) startTail(section);
  if (document.querySelector('[data-expires], form[data-expiring]')) {
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
  }
});
