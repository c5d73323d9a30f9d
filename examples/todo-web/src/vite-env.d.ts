/// <reference types="vite/client" />
interface ImportMetaEnv {
  readonly ELECTRIC_SERVICE?: string
}
