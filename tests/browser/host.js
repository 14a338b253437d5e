// The test host for the Kling player: the MCP Apps host side as ext-apps implements it
// (AppBridge over PostMessageTransport). It renders each player in a sandboxed iframe under
// the CSP built from the resource's `_meta.ui.csp`, as the MCP Apps spec tells hosts to,
// and records what the player asks of the host so the Python test can check it.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const HOST_INFO = { name: "kling-test-host", version: "1.0.0" };

function contentSecurityPolicy(csp = {}) {
  const resources = (csp.resourceDomains || []).join(" ");
  const connect = (csp.connectDomains || []).join(" ");
  return [
    "default-src 'none'",
    `script-src 'self' 'unsafe-inline' ${resources}`,
    `style-src 'self' 'unsafe-inline' ${resources}`,
    `connect-src 'self' ${connect}`,
    `img-src 'self' data: ${resources}`,
    `font-src 'self' ${resources}`,
    `media-src 'self' data: ${resources}`,
    `frame-src ${(csp.frameDomains || []).join(" ") || "'none'"}`,
    "object-src 'none'",
    `base-uri ${(csp.baseUriDomains || []).join(" ") || "'self'"}`,
  ].join("; ");
}

function withPolicy(html, csp) {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(csp)}">`;
  return html.replace(/<head>/i, `<head>${meta}`);
}

class Card {
  constructor(bridge, iframe, hostContext) {
    this.bridge = bridge;
    this.hostContext = hostContext;
    this.iframe = iframe;
    this.calls = [];
    this.links = [];
    this.sizes = [];
    this.replies = {};
  }
}

const cards = [];

/** Mount one player; resolves with its index once the player finished `ui/initialize`. */
async function load({ html, csp, hostContext = {}, width = 360 }) {
  const iframe = document.createElement("iframe");
  iframe.sandbox = "allow-scripts";
  iframe.style.cssText = `width:${width}px;height:80px;border:0;display:block;margin:0 0 16px`;
  iframe.title = `Kling card ${cards.length}`;
  document.getElementById("chat").appendChild(iframe);

  const bridge = new AppBridge(null, HOST_INFO, { openLinks: {}, serverTools: {} }, { hostContext });
  const card = new Card(bridge, iframe, hostContext);
  bridge.oncalltool = async (params) => {
    card.calls.push({ name: params.name, arguments: params.arguments });
    const reply = card.replies[params.name];
    return reply || { content: [{ type: "text", text: `no scripted reply for ${params.name}` }], isError: true };
  };
  bridge.onopenlink = async ({ url }) => {
    card.links.push(url);
    return {};
  };
  bridge.onsizechange = ({ height }) => {
    card.sizes.push(height);
    if (height) iframe.style.height = `${height}px`;
  };
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = withPolicy(html, csp);
  await initialized;
  cards.push(card);
  return cards.length - 1;
}

window.kling = {
  load,
  card: (index) => cards[index],
  sendToolInput: (index, args) => cards[index].bridge.sendToolInput({ arguments: args }),
  sendToolResult: (index, result) => cards[index].bridge.sendToolResult(result),
  setTheme: (index, theme) => {
    const card = cards[index];
    card.hostContext = { ...card.hostContext, theme };
    card.bridge.setHostContext(card.hostContext);
  },
  reply: (index, toolName, result) => { cards[index].replies[toolName] = result; },
  record: (index) => {
    const { calls, links, sizes } = cards[index];
    return { calls, links, sizes, height: cards[index].iframe.getBoundingClientRect().height };
  },
};
