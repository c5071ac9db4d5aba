// Reads the Metrics API of apimeter with Apigee's Node client
// (apigee-edge-js), the way its users read Apigee Edge: connect with a
// token or with Basic credentials, then org.stats.get. Prints the answer as
// one JSON line; exits 1 with the error otherwise. Driven by
// authtest/apigee_test.go through environment variables.
const apigee = require("apigee-edge-js").apigee;

const env = process.env;
const options = { mgmtServer: env.APIMETER_URL, org: env.APIMETER_ORG };
if (env.AUTH_MODE === "basic") {
  // Basic credentials, no OAuth token: the key is the password.
  options.user = "analyst@example.com";
  options.password = env.APIMETER_KEY;
  options.no_token = true;
} else {
  options.token = env.APIMETER_KEY;
}

async function main() {
  const org = await apigee.connect(options);
  const result = await org.stats.get({
    environment: env.APIMETER_ENV,
    dimension: "apis",
    metric: "sum(message_count)",
    startTime: new Date(env.START),
    endTime: new Date(env.END),
    timeUnit: "day",
    limit: 1000,
    optimize: true,
  });
  process.stdout.write(JSON.stringify(result.data) + "\n");
}

main().catch((e) => {
  process.stderr.write("apigee-edge-js: " + (e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
