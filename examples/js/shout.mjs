import { serve } from "mpreg";

await serve({ servers: process.env.MPREG_SERVERS, id: "ts-1", locs: ["ts"] }, {
  shout: ([s]) => String(s).toUpperCase() + "!",
});
