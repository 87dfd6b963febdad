// Signs EIP-712 typed data with ethers.js (an implementation independent of Meridian's Rust
// code), for the governance tests. Reads {"key": "<hex private key>", "typedData": {...}} on
// stdin; prints the 0x signature and the signer's address as JSON.
const { Wallet } = require("ethers");

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", async () => {
  const { key, typedData } = JSON.parse(input);
  const types = { ...typedData.types };
  delete types.EIP712Domain; // ethers derives it from the domain object
  const wallet = new Wallet(key);
  const signature = await wallet.signTypedData(typedData.domain, types, typedData.message);
  process.stdout.write(JSON.stringify({ signature, address: wallet.address }));
});
